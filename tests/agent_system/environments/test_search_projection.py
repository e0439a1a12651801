"""Model text -> Search-QA action (projection.py), including fuzzing with hypothesis."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_system.environments.env_package.search.projection import SearchAction, parse_action, search_projection


@pytest.mark.parametrize("text,expected", [
    ("<search> capital of Peru </search>", SearchAction("search", "capital of Peru")),
    ("<think>I need facts.</think>\n<search>Nabucco premiere</search>", SearchAction("search", "Nabucco premiere")),
    ("<think>sure</think><answer> Lima </answer>", SearchAction("answer", "Lima")),
    ("<ANSWER>Lima</Answer>", SearchAction("answer", "Lima")),
    ("<answer>Lima</answer> Hope this helps!", SearchAction("answer", "Lima")),  # trailing text ignored
    ("<search>multi\nline query</search>\n<information>hallucinated</information>", SearchAction("search", "multi\nline query")),
])
def test_valid_outputs(text, expected):
    assert parse_action(text) == expected


@pytest.mark.parametrize("text", [
    "",
    "Lima",
    "<think>only thinking</think>",
    "<search>unclosed",
    "unopened</answer>",
    "<search></search>",
    "<answer>   </answer>",
    "<search>a</answer>",
    "</search>a<search>",
    "<search>a</search><search>b</search>",  # repeated action
    "<search>a</search><answer>b</answer>",  # both actions
    "<search><search>a</search>",
    "<answer>a</answer></answer>",
])
def test_invalid_outputs(text):
    action = parse_action(text)
    assert not action.is_valid and action.kind is None


def test_batch_projection():
    actions, valids = search_projection(["<answer>x</answer>", "nothing"])
    assert valids == [True, False] and actions[0].content == "x"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(text):
    action = parse_action(text)
    assert action.is_valid == (action.kind in ("search", "answer"))
    assert action.is_valid == bool(action.content)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_characters="<>"), min_size=1), st.sampled_from(["search", "answer"]),
       st.text(alphabet=st.characters(blacklist_characters="<>")))
def test_any_single_block_round_trips(content, kind, prefix):
    action = parse_action(f"{prefix}<think>…</think><{kind}>{content}</{kind}>")
    assert action == (SearchAction(kind, content.strip()) if content.strip() else SearchAction(None))


def test_huge_and_non_ascii_outputs():
    assert parse_action("<answer>東京</answer>") == SearchAction("answer", "東京")
    huge = "<search>" * 200_000 + "x" * 1_000_000
    assert not parse_action(huge).is_valid
    assert parse_action("z" * 2_000_000 + "<answer>ok</answer>").content == "ok"
