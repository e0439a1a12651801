"""Segment cache, compression parsing/resizing and the per-slot history images."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from agent_system.ocr.compression import add_border, compress, parse_compression
from agent_system.ocr.highlight import Highlight
from agent_system.ocr.render import RenderStyle
from agent_system.ocr.visual import OCRSettings, VisualHistory

ENTRIES = [f"[Observation]: You arrive at cabinet {i}. On the cabinet {i}, you see a mug {i} and a "
           f"spoon {i}. [Action]: go to cabinet {i + 1}" for i in range(6)]


def settings(**kw) -> OCRSettings:
    style = RenderStyle(font_size=10, max_width=392, highlights=(Highlight("[Action]", (255, 0, 0)),))
    return OCRSettings(**{"style": style, "padding": 5, "use_parallel": False, **kw})


@pytest.mark.parametrize("text, expected", [
    ("<think>x</think><action>go</action><compression>2</compression>", (2.0, True)),
    ("<compression> 1.5 </compression>", (1.5, True)),
    ("<COMPRESSION>10</COMPRESSION>", (5.0, True)),
    ("<compression>0.5</compression>", (1.0, True)),
    ("<compression>-3</compression>", (1.0, True)),
    ("<compression>nan</compression>", (1.0, True)),
    ("<compression>inf</compression>", (1.0, True)),
    ("<compression>-inf</compression>", (1.0, True)),
    ("<compression>two</compression>", (1.0, True)),
    ("<compression>3", (1.0, True)),
    ("no tag at all", (1.0, True)),
    ("<compression>2</compression><compression>3</compression>", (1.0, False)),
    ("<compression>2</compression> <compression>", (1.0, False)),
])
def test_parse_compression(text, expected):
    assert parse_compression(text) == expected


def test_compress_divides_each_side_by_sqrt_c_with_a_floor():
    image = np.zeros((120, 392, 3), np.uint8)
    assert compress(image, 1.0, 28, 28) is image
    assert compress(image, 4.0, 28, 28).shape == (60, 196, 3)
    assert compress(image, 2.0, 28, 28).shape == (round(120 / math.sqrt(2)), round(392 / math.sqrt(2)), 3)
    assert compress(np.zeros((28, 28, 3), np.uint8), 5.0, 28, 28).shape == (28, 28, 3)
    assert compress(np.zeros((40, 392, 3), np.uint8), 5.0, 28, 28).shape == (28, 175, 3)
    bordered = add_border(np.zeros((10, 20, 3), np.uint8), 5, (255, 255, 255))
    assert bordered.shape == (20, 30, 3) and (bordered[:5] == 255).all() and (bordered[5:15, 5:25] == 0).all()


def test_blank_before_the_first_step_is_28px_plus_padding():
    history = VisualHistory(settings(), num_envs=2)
    images = history.images([[], []])
    assert [im.shape for im in images] == [(38, 38, 3)] * 2 and all((im == 255).all() for im in images)


def test_cached_stack_equals_a_fresh_render_along_an_episode():
    history = VisualHistory(settings(), num_envs=1)
    fresh = VisualHistory(settings(), num_envs=1).renderer
    for step in range(1, len(ENTRIES) + 1):
        window = ENTRIES[max(0, step - 3): step]  # env.history_length = 3
        (image,) = history.images([window])
        expected = np.pad(fresh.render_text("\n".join(window)), ((5, 5), (5, 5), (0, 0)), constant_values=255)
        assert np.array_equal(image, expected), step
    stats = history.stats()
    assert stats["ocr/segments_rendered"] == len(ENTRIES)  # every entry rendered exactly once
    assert stats["ocr/cache_hit_rate"] == pytest.approx(9 / 15)  # lookups 1+2+3+3+3+3, misses 6
    history.reset()
    assert len(history.caches[0]) == 0 and history.stats()["ocr/segments_rendered"] == 0


def test_group_copies_share_renders_and_factors_shrink_the_next_image():
    history = VisualHistory(settings(), num_envs=3)
    plain = history.images([ENTRIES[:2], ENTRIES[:2], []])
    assert history.segments_rendered == 2 and np.array_equal(plain[0], plain[1])
    history.factors = [4.0, 1.0, 1.0]
    small, same, _ = history.images([ENTRIES[:2], ENTRIES[:2], []])
    assert np.array_equal(same, plain[1])
    h, w = plain[0].shape[0] - 10, plain[0].shape[1] - 10
    assert small.shape == (max(28, round(h / 2)) + 10, round(w / 2) + 10, 3)


def test_process_pool_renders_the_same_pixels():
    serial = VisualHistory(settings(), num_envs=4)
    parallel = VisualHistory(settings(use_parallel=True, max_workers=2), num_envs=4)
    windows = [ENTRIES[i: i + 2] for i in range(4)]
    try:
        for a, b in zip(serial.images(windows), parallel.images(windows)):
            assert np.array_equal(a, b)
        assert parallel._pool is not None
    finally:
        parallel.close()


def test_compact_mode_joins_the_window_into_one_paragraph():
    history = VisualHistory(settings(compact_symbol="⏎"), num_envs=1)
    (image,) = history.images([["first entry", "second entry"]])
    assert image.shape == (28 + 10, 392 + 10, 3)  # one wrapped line instead of two
    assert list(history.caches[0]._images) == ["first entry ⏎ second entry"]


def ocr_section(**over):
    base = dict(use_ocr=True, use_parallel=False, max_workers=None, font_size=10, padding=5,
                bg_color=[255, 255, 255], text_color=[0, 0, 0], font_path=None, min_width=28, max_width=392,
                min_height=28, max_height=4096, compact_mode={"enable": False, "symbol": "⏎"},
                highlight_configs=None, agent_select_compression={"enable": True})
    return OmegaConf.create({**base, **over})


def test_settings_from_config_pick_highlights_by_precedence():
    alf = OCRSettings.from_config(ocr_section(), "alfworld", environ={})
    assert [h.text for h in alf.style.highlights] == ["[Observation]", "[Action]"] and alf.select_compression
    search = OCRSettings.from_config(ocr_section(), "search", environ={})
    assert {h.text for h in search.style.highlights} == {"<search>", "</search>", "<information>", "</information>"}
    env = OCRSettings.from_config(ocr_section(), "alfworld", environ={"HIGHLIGHT_CONFIGS": "look:1,2,3"})
    assert env.style.highlights == (Highlight("look", (1, 2, 3)),)
    cfg = OCRSettings.from_config(ocr_section(highlight_configs=[{"context": "x", "color": [9, 9, 9]}]), "alfworld",
                                  environ={})
    assert cfg.style.highlights == (Highlight("x", (9, 9, 9)),)
    assert OCRSettings.from_config(ocr_section(highlight_configs=""), "alfworld", environ={}).style.highlights == ()
    with pytest.raises(ValueError, match="set twice"):
        OCRSettings.from_config(ocr_section(highlight_configs="x:1,1,1"), "alfworld", environ={"HIGHLIGHT_CONFIGS": ""})
