"""Model text -> machines button plus a validity flag (pure functions, never raise on any string).

A light format a 135M model can follow without training: the reply names buttons in plain words.

* the **button** is the admissible button whose name occurs first in the text, as a whole word and
  case-insensitively ("Press blue, yellow, red." -> ``blue`` while blue is unlit; once blue is lit it
  is no longer admissible and the same reply gives ``yellow``);
* the output is **valid** when it names at least one admissible button; an invalid output presses
  nothing (the turn is used up) and its sample is flagged ``is_action_valid = False``.

Naming a lit button (e.g. repeating what was pressed) is not an action: only unlit buttons count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


def first_named(text: str, names: Sequence[str]) -> str | None:
    """The name in ``names`` that occurs first in ``text`` (whole word, case-insensitive), or None."""
    best: tuple[int, str] | None = None
    for name in names:
        match = re.search(rf"\b{re.escape(name)}\b", text, flags=re.IGNORECASE)
        if match is not None and (best is None or match.start() < best[0]):
            best = (match.start(), name)
    return best[1] if best is not None else None


def machines_projection(texts: Sequence[str], admissible: Sequence[Sequence[str]]) -> tuple[list[str | None], list[bool]]:
    """One (button or None, valid) per text; ``admissible[i]`` are text ``i``'s unlit buttons."""
    if len(texts) != len(admissible):
        raise ValueError(f"machines_projection got {len(texts)} texts for {len(admissible)} admissible lists")
    buttons = [first_named(text, names) for text, names in zip(texts, admissible)]
    return buttons, [button is not None for button in buttons]
