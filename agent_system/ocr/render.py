"""Monospace text -> RGB image (AgentOCR's renderer, in our own code).

Layout, for a fixed image width ``max_width``:

* font: DejaVu Sans Mono at ``font_size`` (matplotlib ships ``DejaVuSansMono.ttf``, so no system font is
  needed) or ``font_path``;
* greedy word wrap to ``floor(max_width / average character width)`` characters per line; a word longer
  than a line is hard-split;
* line height = round(1.2 x the glyph height of the printable ASCII set); each wrapped line is drawn in its
  own strip of that height (glyphs never bleed into the next line), so the image of a text is exactly the
  vertical stack of the images of its paragraphs — what makes the segment cache exact;
* ``text_color`` on ``bg_color``, configured substrings in their highlight colour.

Images are ``uint8`` arrays of shape (height, width, 3).
"""

from __future__ import annotations

import importlib.util
import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from agent_system.ocr.highlight import Color, Highlight, color_runs

LINE_SPACING = 1.2
METRIC_SAMPLE = string.ascii_letters + string.digits + string.punctuation + " "


def bundled_font_path() -> Path:
    """``DejaVuSansMono.ttf`` from matplotlib's data folder (found without importing matplotlib)."""
    spec = importlib.util.find_spec("matplotlib")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSansMono.ttf"
        if path.is_file():
            return path
    raise FileNotFoundError("DejaVuSansMono.ttf not found: install matplotlib (pip install matplotlib) "
                            "or set ocr.font_path to a monospace .ttf file")


@dataclass(frozen=True)
class RenderStyle:
    """What the renderer needs from the ``ocr`` config section."""

    font_size: int = 12
    max_width: int = 392
    min_width: int = 28
    min_height: int = 28
    max_height: int = 4096
    bg_color: Color = (255, 255, 255)
    text_color: Color = (0, 0, 0)
    font_path: str | None = None
    highlights: tuple[Highlight, ...] = ()


class TextRenderer:
    """Wraps and draws text in one :class:`RenderStyle`; thread-safe (no mutable state after init)."""

    def __init__(self, style: RenderStyle):
        self.style = style
        path = style.font_path or str(bundled_font_path())
        try:
            self.font = ImageFont.truetype(path, style.font_size)
        except OSError as err:
            raise ValueError(f"ocr.font_path={path!r} could not be loaded as a TrueType font ({err}); "
                             "point it at a .ttf file or leave it null for DejaVu Sans Mono") from err
        self.char_width = self.font.getlength(METRIC_SAMPLE) / len(METRIC_SAMPLE)
        _, top, _, bottom = self.font.getbbox(METRIC_SAMPLE)
        self.line_height = max(1, round(LINE_SPACING * (bottom - top)))
        self._text_y = (self.line_height - (bottom - top)) // 2 - top
        self.chars_per_line = max(1, math.floor(style.max_width / self.char_width))

    def wrap(self, paragraph: str) -> list[str]:
        """Greedy word wrap of one paragraph (whitespace collapses; over-long words are hard-split)."""
        width = self.chars_per_line
        lines: list[str] = []
        current = ""
        for word in paragraph.split():
            if current and len(current) + 1 + len(word) <= width:
                current += " " + word
                continue
            if current:
                lines.append(current)
            while len(word) > width:
                lines.append(word[:width])
                word = word[width:]
            current = word
        if current:
            lines.append(current)
        return lines

    def draw_lines(self, lines: list[str]) -> np.ndarray:
        """(len(lines) x line_height, max_width, 3) image, one strip per line."""
        style, h = self.style, self.line_height
        canvas = np.empty((len(lines) * h, style.max_width, 3), dtype=np.uint8)
        canvas[:] = style.bg_color
        for k, line in enumerate(lines):
            strip = Image.new("RGB", (style.max_width, h), style.bg_color)
            draw = ImageDraw.Draw(strip)
            x = 0.0
            for text, color in color_runs(line, style.highlights, style.text_color):
                draw.text((x, self._text_y), text, font=self.font, fill=color)
                x += self.font.getlength(text)
            canvas[k * h:(k + 1) * h] = np.asarray(strip)
        return canvas

    def render_paragraph(self, paragraph: str) -> np.ndarray:
        """One history entry: wrapped and drawn (0 rows for an empty entry)."""
        return self.draw_lines(self.wrap(paragraph))

    def render_text(self, text: str) -> np.ndarray:
        """A whole text, each ``\\n``-separated paragraph wrapped on its own, fitted by :meth:`fit`."""
        return self.fit([self.render_paragraph(p) for p in text.split("\n")])

    def fit(self, blocks: list[np.ndarray]) -> np.ndarray:
        """Stack paragraph images into the history image: ``max_width`` wide, between ``min_height``
        (background below the text) and ``max_height`` rows. Above ``max_height`` whole lines are dropped
        from the top, so the most recent history stays readable (the reference cuts the newest instead).
        No text at all gives :meth:`blank`."""
        style = self.style
        if not any(len(b) for b in blocks):
            return self.blank()
        stacked = np.concatenate(blocks)
        if len(stacked) > style.max_height:
            keep = max(1, style.max_height // self.line_height) * self.line_height
            stacked = stacked[len(stacked) - keep:]
        if len(stacked) < style.min_height:
            below = np.empty((style.min_height - len(stacked), style.max_width, 3), dtype=np.uint8)
            below[:] = style.bg_color
            stacked = np.concatenate([stacked, below])
        return stacked

    def blank(self) -> np.ndarray:
        """The empty history image (``min_height`` x ``min_width``, 28 x 28 by default) shown before the
        first step and for finished episodes."""
        out = np.empty((self.style.min_height, self.style.min_width, 3), dtype=np.uint8)
        out[:] = self.style.bg_color
        return out
