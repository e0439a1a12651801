"""The history image of every environment slot of a manager: render (cached), compress, pad.

An environment manager in visual mode owns one :class:`VisualHistory`. Per step it passes each slot's
history window (a list of one-line entries; empty before the first step and for finished episodes)
and gets one ``uint8`` RGB image per slot back::

    entries --segment cache / renderer--> stacked history image --compress(c)--> + border --> image

Entries that no slot has cached yet are rendered once per call even when several slots need them (group
copies of a task share their first observations). With ``ocr.use_parallel`` they are rendered by a pool
of ``ocr.max_workers`` processes (forked from a server that imports only this module): Pillow holds
the GIL while drawing text, so threads would not overlap (measured: 1.0x with 2 threads), processes do.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent_system.ocr.cache import SegmentCache
from agent_system.ocr.compression import add_border, compress
from agent_system.ocr.highlight import DEFAULT_HIGHLIGHTS, ENV_VAR, parse_highlights
from agent_system.ocr.render import RenderStyle, TextRenderer


@dataclass(frozen=True)
class OCRSettings:
    """Plain values of the ``ocr`` config section (see ``ppo_trainer.yaml`` for their meaning)."""

    style: RenderStyle
    padding: int = 5
    use_parallel: bool = True
    max_workers: int | None = None
    compact_symbol: str | None = None  # set = compact mode: the window is one paragraph joined by it
    select_compression: bool = False

    @classmethod
    def from_config(cls, ocr: Any, env_family: str, environ: dict[str, str] | None = None) -> "OCRSettings":
        """From the ``ocr`` config section; highlight colours from ``ocr.highlight_configs``, else the
        ``HIGHLIGHT_CONFIGS`` environment variable, else the environment's defaults."""
        container = _plain(ocr)
        environ = os.environ if environ is None else environ
        configured, from_env = container.get("highlight_configs"), environ.get(ENV_VAR)
        if configured is not None and from_env is not None:
            raise ValueError(f"highlight colours are set twice, by ocr.highlight_configs and by ${ENV_VAR}; "
                             f"unset one of them")
        if configured is not None:
            highlights = parse_highlights(configured, "ocr.highlight_configs")
        elif from_env is not None:
            highlights = parse_highlights(from_env, ENV_VAR)
        else:
            highlights = parse_highlights(DEFAULT_HIGHLIGHTS.get(env_family, ""))
        compact = container["compact_mode"]
        style = RenderStyle(
            font_size=int(container["font_size"]), max_width=int(container["max_width"]),
            min_width=int(container["min_width"]), min_height=int(container["min_height"]),
            max_height=int(container["max_height"]), bg_color=tuple(container["bg_color"]),
            text_color=tuple(container["text_color"]), font_path=container["font_path"], highlights=highlights)
        return cls(style=style, padding=int(container["padding"]), use_parallel=bool(container["use_parallel"]),
                   max_workers=container["max_workers"],
                   compact_symbol=str(compact["symbol"]) if compact["enable"] else None,
                   select_compression=bool(container["agent_select_compression"]["enable"]))


def _plain(section: Any) -> dict:
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(section):
            return OmegaConf.to_container(section, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return dict(section)


# ------------------------------------------------------------------------- process-pool rendering
_WORKER_RENDERER: TextRenderer | None = None


def _init_worker(style: RenderStyle) -> None:
    global _WORKER_RENDERER
    _WORKER_RENDERER = TextRenderer(style)


def _pool_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a small server process that imports only this module: no copy of a trainer's
    threads (plain fork is unsafe there) and no re-import of ``__main__`` with torch in every worker (spawn)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _render_in_worker(text: str) -> np.ndarray:
    assert _WORKER_RENDERER is not None
    return _WORKER_RENDERER.render_paragraph(text)


class VisualHistory:
    """History images for ``num_envs`` slots; see the module docstring."""

    def __init__(self, settings: OCRSettings, num_envs: int):
        self.settings = settings
        self.renderer = TextRenderer(settings.style)
        self.caches = [SegmentCache() for _ in range(num_envs)]
        self.factors = [1.0] * num_envs  # chosen at the last step; applied to the next image
        self._pool: Executor | None = None
        self._workers = settings.max_workers or min(32, os.cpu_count() or 1)
        self.render_seconds = 0.0
        self.segments_rendered = 0

    # ------------------------------------------------------------------ per episode / per step
    def reset(self) -> None:
        """A new episode in every slot: empty caches, no compression, zeroed statistics."""
        for cache in self.caches:
            cache.clear()
            cache.hits = cache.misses = 0
        self.factors = [1.0] * len(self.caches)
        self.render_seconds = 0.0
        self.segments_rendered = 0

    def images(self, windows: list[list[str]]) -> list[np.ndarray]:
        """One image per slot from its history window (entries oldest first; [] -> blank image)."""
        if len(windows) != len(self.caches):
            raise ValueError(f"got {len(windows)} history windows for {len(self.caches)} slots")
        start = time.perf_counter()
        windows = [self._segments(w) for w in windows]
        found = [[cache.lookup(text) for text in window] for cache, window in zip(self.caches, windows)]
        missing = list(dict.fromkeys(t for w, f in zip(windows, found) for t, img in zip(w, f) if img is None))
        rendered = dict(zip(missing, self._render(missing)))
        self.segments_rendered += len(missing)
        out = []
        for i, (window, images) in enumerate(zip(windows, found)):
            blocks = []
            for text, image in zip(window, images):
                if image is None:
                    image = rendered[text]
                    self.caches[i].insert(text, image)
                blocks.append(image)
            out.append(self._finish(self.renderer.fit(blocks), self.factors[i]))
        self.render_seconds += time.perf_counter() - start
        return out

    def stats(self) -> dict[str, float]:
        """Rendering statistics since :meth:`reset` (``ocr/*`` metrics)."""
        hits = sum(c.hits for c in self.caches)
        lookups = hits + sum(c.misses for c in self.caches)
        return {"ocr/render_seconds": self.render_seconds,
                "ocr/cache_hit_rate": hits / lookups if lookups else 0.0,
                "ocr/segments_rendered": float(self.segments_rendered)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    # ---------------------------------------------------------------------------------- helpers
    def _segments(self, window: list[str]) -> list[str]:
        symbol = self.settings.compact_symbol
        if symbol is None or not window:
            return list(window)
        return [f" {symbol} ".join(window)]

    def _finish(self, image: np.ndarray, factor: float) -> np.ndarray:
        style = self.settings.style
        return add_border(compress(image, factor, style.min_width, style.min_height), self.settings.padding,
                          style.bg_color)

    def _render(self, texts: list[str]) -> list[np.ndarray]:
        if not (self.settings.use_parallel and len(texts) > 1):
            return [self.renderer.render_paragraph(t) for t in texts]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self._workers, mp_context=_pool_context(),
                                             initializer=_init_worker, initargs=(self.settings.style,))
        chunk = max(1, len(texts) // (4 * self._workers))
        return list(self._pool.map(_render_in_worker, texts, chunksize=chunk))
