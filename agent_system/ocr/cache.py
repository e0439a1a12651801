"""Per-episode segment cache (AgentOCR §3.3): every history entry is rendered once and reused.

The history image of a step is the vertical stack of its entries' images (see
:meth:`~agent_system.ocr.render.TextRenderer.fit`); a sliding history window therefore re-renders only
the entry added by the last step. The AgentOCR paper reports about 20x faster rendering from this.
One cache per environment slot, cleared when its episode is reset.
"""

from __future__ import annotations

import numpy as np


class SegmentCache:
    """history entry text -> its rendered image, with hit/miss counters."""

    def __init__(self) -> None:
        self._images: dict[str, np.ndarray] = {}
        self.hits = 0
        self.misses = 0

    def lookup(self, text: str) -> np.ndarray | None:
        image = self._images.get(text)
        if image is None:
            self.misses += 1
        else:
            self.hits += 1
        return image

    def insert(self, text: str, image: np.ndarray) -> None:
        self._images[text] = image

    def clear(self) -> None:
        self._images.clear()

    def __len__(self) -> int:
        return len(self._images)
