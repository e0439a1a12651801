"""Model text -> Search-QA action (SPEC §4). Pure functions; never raise on any string.

A valid output holds exactly one action block, ``<search> query </search>`` or ``<answer> text
</answer>``: one opening and one closing action tag in the whole text, of the same kind, in that order,
with non-empty content. Anything may come before the block (typically ``<think> ... </think>``) and
after it, as long as it has no further action tag; text after the closing tag is ignored. Tags match
case-insensitively; the content is stripped.

Like the reference, repeats anywhere in the output make it invalid (e.g. a search followed by a
hallucinated ``<answer>``), so a model that rambles past its action is penalised. Unlike the reference,
an invalid output executes nothing: the environment answers with a format reminder and the episode goes
on (the turn still counts towards ``env.max_steps``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ActionKind = Literal["search", "answer"]

_ACTION_TAG = re.compile(r"<(/?)(search|answer)>", re.IGNORECASE)


@dataclass(frozen=True)
class SearchAction:
    """A parsed model output; ``kind`` is None for an invalid output."""

    kind: ActionKind | None
    content: str = ""

    @property
    def is_valid(self) -> bool:
        return self.kind is not None


INVALID = SearchAction(kind=None)


def parse_action(text: str) -> SearchAction:
    """Parse one model output under the rules of the module docstring."""
    tags = list(_ACTION_TAG.finditer(text))
    if len(tags) != 2:
        return INVALID
    opening, closing = tags
    kind = opening.group(2).lower()
    if opening.group(1) or not closing.group(1) or closing.group(2).lower() != kind:
        return INVALID
    content = text[opening.end() : closing.start()].strip()
    if not content:
        return INVALID
    return SearchAction(kind=kind, content=content)  # type: ignore[arg-type]


def search_projection(texts: list[str]) -> tuple[list[SearchAction], list[bool]]:
    """Batch form of :func:`parse_action`: (actions, validity flags)."""
    actions = [parse_action(text) for text in texts]
    return actions, [action.is_valid for action in actions]
