"""ALFWorld projection: model text -> (command, valid); hand cases and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_system.environments.env_package.alfworld.projection import alfworld_projection, project_action


@pytest.mark.parametrize(
    "text, action, valid",
    [
        ("<think>the mug is on the desk</think><action>go to desk 1</action>", "go to desk 1", True),
        ("<think>x</think>\n<action>  Take Mug 1 from Desk 1 \n</action>", "take mug 1 from desk 1", True),
        ("<THINK>x</THINK><ACTION>look</ACTION>", "look", True),
        ("<action>look</action><think>after the fact</think>", "look", True),
        # a tag missing: the action still runs, the sample is invalid
        ("<action>look</action>", "look", False),
        ("<think>x</think> go to desk 1", "", False),
        ("<think>x<action>look</action>", "look", False),
        # tags repeated or nested; repeated action tags execute nothing
        ("<think>a</think><think>b</think><action>look</action>", "look", False),
        ("<think>a</think><action>look</action><action>inventory</action>", "", False),
        ("<think>a</think><action>look</action></action>", "", False),
        ("<think>a</think><ACTION>look<action>inventory</action>", "", False),
        ("<think>a <action>look</action></think>", "look", False),
        ("<think>a</think></action>look<action>", "", False),
        # empty action, CJK characters
        ("<think>a</think><action>   </action>", "", False),
        ("<think>我想去桌子</think><action>go to desk 1</action>", "go to desk 1", False),
        ("<think>つくえ</think><action>go to desk 1</action>", "go to desk 1", False),
        ("<think>책상</think><action>go to desk 1</action>", "go to desk 1", False),
        ("<think>café, naïve — ok</think><action>go to desk 1</action>", "go to desk 1", True),
        ("", "", False),
    ],
)
def test_projection_rules(text, action, valid):
    assert project_action(text) == (action, valid)


def test_batch_form_keeps_order():
    texts = ["<think>a</think><action>look</action>", "garbage", "<think>b</think><action>Inventory</action>"]
    assert alfworld_projection(texts) == (["look", "", "inventory"], [True, False, True])


_tags = st.sampled_from(["<think>", "</think>", "<action>", "</action>", "<ACTION>", "\n", " ", "look", "中"])
_texty = st.lists(st.one_of(_tags, st.text(max_size=20)), max_size=30).map("".join)


@settings(max_examples=400, deadline=None)
@given(_texty)
def test_never_raises_and_returns_clean_commands(text):
    action, valid = project_action(text)
    assert isinstance(action, str) and isinstance(valid, bool)
    assert action == action.strip() and action == action.lower()
    if valid:
        assert action and text.lower().count("<action>") == 1
    if text.lower().count("<action>") > 1 or text.lower().count("</action>") > 1:
        assert action == "" and not valid


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda s: "<" not in s))
def test_well_formed_output_round_trips(command):
    action, _ = project_action(f"<think>plan</think><action>{command}</action>")
    assert action == command.lower().strip()


def test_huge_and_binary_outputs():
    huge = "<think>" + "x" * 2_000_000 + "</think><action>look</action>"
    assert project_action(huge) == ("look", True)
    assert project_action("\x00\ud800<action>\x00</action>")[1] is False
    assert project_action("<action>" * 100_000)[1] is False
