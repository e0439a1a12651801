"""Answer normalisation and the exact-match reward of Search-QA (SPEC §4).

The normalisation is the SQuAD / Search-R1 one: lower-case, drop punctuation, drop the articles
"a", "an", "the", collapse whitespace. A prediction scores 1 when its normal form equals the normal form
of any gold answer.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, remove punctuation, remove articles, collapse whitespace."""
    text = text.lower().translate(_PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold_answers: Sequence[str]) -> float:
    """1.0 if ``prediction`` matches any gold answer after :func:`normalize_answer`, else 0.0."""
    predicted = normalize_answer(prediction)
    return float(any(predicted == normalize_answer(gold) for gold in gold_answers))


def gold_answer_list(ground_truth: Any) -> list[str]:
    """Gold answers as a list of strings from any of the stored forms.

    Accepted: a string, a list / tuple / numpy array of strings (parquet gives arrays), or a mapping with
    a ``"target"`` entry holding one of those (the ``reward_model.ground_truth`` form).
    """
    if isinstance(ground_truth, Mapping):
        if "target" not in ground_truth:
            raise ValueError(
                f"ground_truth mapping {dict(ground_truth)!r} has no 'target' key; "
                "store gold answers as {'target': [answer, ...]} or as a plain list"
            )
        ground_truth = ground_truth["target"]
    if isinstance(ground_truth, str):
        answers = [ground_truth]
    elif isinstance(ground_truth, (list, tuple, np.ndarray)):
        answers = list(ground_truth)
    else:
        raise ValueError(
            f"ground_truth must be a string, a list of strings or {{'target': [...]}}, "
            f"got {type(ground_truth).__name__}: {ground_truth!r}"
        )
    if not answers or not all(isinstance(answer, str) for answer in answers):
        raise ValueError(f"ground_truth needs at least one gold answer and only strings, got {answers!r}")
    return answers
