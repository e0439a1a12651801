"""Model text -> echo attempt: the first line, stripped and lower-cased; valid when it is one word."""

from __future__ import annotations

MAX_ATTEMPT_CHARS = 64


def echo_projection(texts: list[str]) -> tuple[list[str], list[bool]]:
    actions, valids = [], []
    for text in texts:
        line = text.strip().split("\n", 1)[0].strip().lower()[:MAX_ATTEMPT_CHARS]
        actions.append(line)
        valids.append(bool(line) and len(line.split()) == 1)
    return actions, valids
