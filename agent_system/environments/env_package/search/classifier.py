"""The question classifier: which skill category (``SEARCH_SKILL_TYPES``) a Search-QA task belongs to.

One rule set, used for training and validation data alike (the reference only labelled validation data,
so task skills were never injected during training). Rules, first match wins:

1. Single-hop sources are labelled by source: ``nq`` and ``triviaqa`` -> ``direct_retrieval``,
   ``popqa`` -> ``entity_attribute_lookup``. Their questions are single-hop even when they read
   "which ... or ..." (e.g. "In which Canadian province or state is Cape Race?").
2. Otherwise a question that contains the whole words "which" and "or" is a comparison between named
   alternatives -> ``compare`` (e.g. "Which opera was produced first, Nabucco or Il prigioniero?").
   Whole words: the reference matched substrings, so "for" or "world" counted as "or".
3. Everything else -> ``multi_hop_reasoning``: HotpotQA, 2WikiMultihopQA, MuSiQue, Bamboogle, and any
   source not listed above (new data sets default to the most general category).
"""

from __future__ import annotations

import re

SOURCE_SKILL_TYPES: dict[str, str] = {
    "nq": "direct_retrieval",
    "triviaqa": "direct_retrieval",
    "popqa": "entity_attribute_lookup",
}

_WHICH = re.compile(r"\bwhich\b", re.IGNORECASE)
_OR = re.compile(r"\bor\b", re.IGNORECASE)


def classify_question(question: str, data_source: str) -> str:
    """Skill category of a question from its data source and wording (rules in the module docstring)."""
    source_type = SOURCE_SKILL_TYPES.get(data_source.strip().lower())
    if source_type is not None:
        return source_type
    if _WHICH.search(question) and _OR.search(question):
        return "compare"
    return "multi_hop_reasoning"
