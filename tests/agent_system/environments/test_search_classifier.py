"""The question -> skill type classifier (SPEC §4) and its precedence rules."""

from __future__ import annotations

import json

import pytest

from agent_system.environments.categories import SEARCH_SKILL_TYPES
from agent_system.environments.env_package.search.classifier import classify_question
from agent_system.environments.env_package.search.dataset import default_qa_dir


@pytest.mark.parametrize("question,source,expected", [
    ("who sang gonna sit right down and write myself a letter", "nq", "direct_retrieval"),
    ("In which Canadian province or state is Cape Race?", "triviaqa", "direct_retrieval"),  # source wins
    ("Who is the author of The Book of the Law?", "popqa", "entity_attribute_lookup"),
    ("Which opera was produced first, Nabucco or Il prigioniero?", "hotpotqa", "compare"),
    ("WHICH film came out first, X OR Y?", "2wikimultihopqa", "compare"),
    ("Which band was formed first, Foo or Bar?", "brand_new_set", "compare"),
    ("Which country is the director of Oreo for the world from?", "hotpotqa", "multi_hop_reasoning"),  # "or" in words
    ("Are Travis Parrott and Menno Oosting both tennis players?", "hotpotqa", "multi_hop_reasoning"),
    ("What is the record label of the artist who sings X?", "musique", "multi_hop_reasoning"),
    ("Who was president when Citibank was founded?", "bamboogle", "multi_hop_reasoning"),
    ("Who directed Alien?", "some_unknown_source", "multi_hop_reasoning"),
    ("Who directed Alien?", " NQ ", "direct_retrieval"),
])
def test_classify_question(question, source, expected):
    assert classify_question(question, source) == expected


def test_every_bundled_question_gets_a_known_category():
    seen = set()
    for path in sorted(default_qa_dir().glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            seen.add(classify_question(row["question"], row["data_source"]))
    assert seen == set(SEARCH_SKILL_TYPES)
