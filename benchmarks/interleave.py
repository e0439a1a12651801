"""Interleaved A/B measurement for ``compare.py``: rounds of every side, then medians with min-max.

On a shared machine the load drifts by minutes; measuring side A for ten minutes and then side B
compares two different machines. Here every round runs each side once (A B A B ...), ratios are taken
within a round (A and B saw the same load), and each value is reported as the median over the rounds
with its [min, max] range.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Mapping, Sequence

Side = Callable[[], Mapping[str, float]]
Ratio = tuple[str, str]  # (numerator key, denominator key)


def interleave(sides: Sequence[Side], reps: int) -> list[dict[str, float]]:
    """Run every side once per round, in the given order, for ``reps`` rounds; a round's dict merges
    the metrics its sides returned (each side names its own keys)."""
    if reps < 1:
        raise ValueError(f"reps={reps} must be >= 1")
    rounds = []
    for rep in range(reps):
        merged: dict[str, float] = {}
        for side in sides:
            values = {key: float(value) for key, value in side().items()}
            print(f"[compare] round {rep + 1}/{reps}: {json.dumps(values)}", file=sys.stderr, flush=True)
            merged.update(values)
        rounds.append(merged)
    return rounds


def add_ratios(rounds: list[dict[str, float]], ratios: Mapping[str, Ratio]) -> None:
    """Add ``name = numerator / denominator`` to every round (within-round ratios)."""
    for values in rounds:
        for name, (numerator, denominator) in ratios.items():
            values[name] = values[numerator] / values[denominator] if values[denominator] else float("nan")


def summarize(rounds: list[dict[str, float]], digits: int = 3) -> dict:
    """``{key: median, ..., "range": {key: [min, max]}, "reps": n}`` over the rounds' keys."""
    keys = list(rounds[0])
    summary: dict = {key: round(statistics.median(r[key] for r in rounds), digits) for key in keys}
    summary["range"] = {key: [round(min(r[key] for r in rounds), digits), round(max(r[key] for r in rounds), digits)]
                        for key in keys}
    summary["reps"] = len(rounds)
    return summary


def check_targets(summary: Mapping[str, float], targets: Mapping[str, tuple[str, float]]) -> dict:
    """``{key: {"target": ">= 2.0", "met": bool}}`` for each ``key: (">=" | "<=", bound)``."""
    checked = {}
    for key, (op, bound) in targets.items():
        value = summary[key]
        met = value >= bound if op == ">=" else value <= bound
        checked[key] = {"target": f"{op} {bound:.3g}", "met": bool(met)}
    return checked
