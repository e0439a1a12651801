"""Answer normalisation and exact match (SPEC §4)."""

from __future__ import annotations

import numpy as np
import pytest

from agent_system.environments.env_package.search.answers import exact_match, gold_answer_list, normalize_answer


@pytest.mark.parametrize("raw,normal", [
    ("The Comics Journal", "comics journal"),
    ("  an   Apple,  a day! ", "apple day"),
    ("U.S.A.", "usa"),
    ("Theatre of the absurd", "theatre of absurd"),  # "the" only as a whole word
    ("Anne-Marie", "annemarie"),
    ("30 September 1764", "30 september 1764"),
    ("\tLine\nbreaks\r", "line breaks"),
    ("", ""),
])
def test_normalize_answer(raw, normal):
    assert normalize_answer(raw) == normal


def test_exact_match_against_any_gold_answer():
    golds = ["Capitol Records", "Capitol"]
    assert exact_match("capitol", golds) == 1.0
    assert exact_match("  The Capitol Records. ", golds) == 1.0
    assert exact_match("Capitol Records Inc", golds) == 0.0
    assert exact_match("", golds) == 0.0


@pytest.mark.parametrize("stored", [
    "Paris", ["Paris", "paris"], ("Paris",), np.array(["Paris"], dtype=object), {"target": ["Paris"]},
    {"target": np.array(["Paris"], dtype=object)},
])
def test_gold_answers_from_every_stored_form(stored):
    assert gold_answer_list(stored)[0] == "Paris"


@pytest.mark.parametrize("stored,message", [
    (None, "must be a string"), (3, "must be a string"), ([], "at least one"), ([1], "only strings"),
    ({"answers": ["x"]}, "no 'target' key"),
])
def test_bad_gold_answers_are_rejected(stored, message):
    with pytest.raises(ValueError, match=message):
        gold_answer_list(stored)
