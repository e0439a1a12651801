"""Agent-chosen compression (AgentOCR): ``<compression>c</compression>`` in the model output.

The factor chosen at step t shrinks the history image shown at step t+1: each side is divided by
sqrt(c) (so the pixel count, and with it the visual token count, drops by about c), never below the
minimum side, with Lanczos resampling; then a uniform border of ``ocr.padding`` pixels is added.
"""

from __future__ import annotations

import math
import re

import numpy as np
from PIL import Image

from agent_system.ocr.highlight import Color

MIN_FACTOR = 1.0
MAX_FACTOR = 5.0
_OPEN = re.compile(r"<compression>", re.IGNORECASE)
_BLOCK = re.compile(r"<compression>(.*?)</compression>", re.IGNORECASE | re.DOTALL)


def parse_compression(text: str) -> tuple[float, bool]:
    """(factor, well_formed) of one model output.

    No tag, an unparsable number, NaN or +-inf give 1.0 (no compression); numbers are clamped to
    [1, 5]. More than one ``<compression>`` tag gives (1.0, False): the output is an invalid action.
    """
    if len(_OPEN.findall(text)) > 1:
        return MIN_FACTOR, False
    match = _BLOCK.search(text)
    if match is None:
        return MIN_FACTOR, True
    try:
        value = float(match.group(1).strip())
    except ValueError:
        return MIN_FACTOR, True
    if not math.isfinite(value):
        return MIN_FACTOR, True
    return min(MAX_FACTOR, max(MIN_FACTOR, value)), True


def compress(image: np.ndarray, factor: float, min_width: int, min_height: int) -> np.ndarray:
    """Each side divided by sqrt(factor) (at least ``min_width`` / ``min_height``; never enlarged), Lanczos."""
    height, width = image.shape[:2]
    scale = 1.0 / math.sqrt(factor)
    new_w = min(width, max(min_width, round(width * scale)))
    new_h = min(height, max(min_height, round(height * scale)))
    if (new_w, new_h) == (width, height):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.LANCZOS))


def add_border(image: np.ndarray, padding: int, color: Color) -> np.ndarray:
    """A uniform ``padding``-pixel border of ``color`` around the image."""
    if padding <= 0:
        return image
    height, width = image.shape[:2]
    out = np.empty((height + 2 * padding, width + 2 * padding, 3), dtype=np.uint8)
    out[:] = color
    out[padding:padding + height, padding:padding + width] = image
    return out
