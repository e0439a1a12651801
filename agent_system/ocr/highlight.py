"""Highlight colours: configured substrings of the history text are drawn in their own colour.

Two spellings are accepted (the reference's): a list of ``{"context": text, "color": [r, g, b]}``
mappings (``ocr.highlight_configs``) or one string ``"text:r,g,b;text:r,g,b"`` (the ``HIGHLIGHT_CONFIGS``
environment variable, or ``ocr.highlight_configs`` given as a string). In the string form each entry
is split on its *last* colon, so the text itself may contain colons (``[Action]::255,0,0``).
Bad entries are errors that name the entry, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Color = tuple[int, int, int]

ENV_VAR = "HIGHLIGHT_CONFIGS"

# Used when neither ocr.highlight_configs nor HIGHLIGHT_CONFIGS is set (the reference scripts' values).
BLUE: Color = (0, 0, 255)
RED: Color = (255, 0, 0)
DEFAULT_HIGHLIGHTS: dict[str, str] = {
    "alfworld": "[Observation]:0,0,255;[Action]:255,0,0",
    "search": "<search>:0,0,255;</search>:0,0,255;<information>:255,0,0;</information>:255,0,0",
}


@dataclass(frozen=True)
class Highlight:
    text: str
    color: Color


def _color(value: Any, where: str) -> Color:
    try:
        rgb = tuple(int(str(c).strip()) for c in value)
    except (TypeError, ValueError):
        rgb = ()
    if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
        raise ValueError(f"{where}: colour {value!r} must be three integers 0-255 (r,g,b)")
    return rgb  # type: ignore[return-value]


def parse_highlights(value: Any, where: str = "ocr.highlight_configs") -> tuple[Highlight, ...]:
    """``"text:r,g,b;..."`` or a list of ``{context, color}`` -> highlights ('' / [] -> none)."""
    if value is None:
        return ()
    if isinstance(value, str):
        out = []
        for entry in (e.strip() for e in value.split(";")):
            if not entry:
                continue
            text, sep, rgb = entry.rpartition(":")
            if not sep or not text:
                raise ValueError(f"{where}: entry {entry!r} must look like text:r,g,b (e.g. [Action]::255,0,0)")
            out.append(Highlight(text, _color(rgb.split(","), f"{where} entry {entry!r}")))
        return tuple(out)
    if isinstance(value, Sequence):
        out = []
        for entry in value:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("context"), str) or not entry["context"]:
                raise ValueError(f"{where}: entry {entry!r} must be a mapping with a non-empty 'context' string "
                                 "and a 'color' [r, g, b]")
            out.append(Highlight(entry["context"], _color(entry.get("color"), f"{where} entry {entry!r}")))
        return tuple(out)
    raise ValueError(f"{where}={value!r} must be null, a 'text:r,g,b;...' string or a list of {{context, color}}")


def color_runs(line: str, highlights: Sequence[Highlight], default: Color) -> list[tuple[str, Color]]:
    """Split ``line`` into (text, colour) runs; at each position the longest matching highlight wins."""
    runs: list[tuple[str, Color]] = []
    plain_start, i = 0, 0
    while i < len(line):
        match = max((h for h in highlights if line.startswith(h.text, i)), key=lambda h: len(h.text), default=None)
        if match is None:
            i += 1
            continue
        if plain_start < i:
            runs.append((line[plain_start:i], default))
        runs.append((match.text, match.color))
        i += len(match.text)
        plain_start = i
    if plain_start < len(line):
        runs.append((line[plain_start:], default))
    return runs
