"""Golden tests of the history renderer: metrics, wrapping, sizes, highlight colours, blank image."""

from __future__ import annotations

import numpy as np
import pytest

from agent_system.ocr.highlight import Highlight, color_runs, parse_highlights
from agent_system.ocr.render import RenderStyle, TextRenderer

WHITE, BLACK, RED, BLUE = (255, 255, 255), (0, 0, 0), (255, 0, 0), (0, 0, 255)


def renderer(**style) -> TextRenderer:
    return TextRenderer(RenderStyle(**{"font_size": 10, "max_width": 392, **style}))


def test_dejavu_mono_metrics_give_the_reference_layout():
    r = renderer()
    assert r.char_width == pytest.approx(6.015625)  # DejaVu Sans Mono advance at 10 px
    assert r.line_height == 12  # round(1.2 x glyph height 10)
    assert r.chars_per_line == 65  # floor(392 / 6.015625)
    assert renderer(font_size=12, max_width=560).chars_per_line == 77


def test_greedy_wrap_and_hard_split():
    r = renderer(max_width=61)  # floor(61 / 6.015625) = 10 characters per line
    assert r.chars_per_line == 10
    assert r.wrap("go to the countertop 2 now") == ["go to the", "countertop", "2 now"]
    assert r.wrap("abcdefghijklmnopqrstuvwxyz end") == ["abcdefghij", "klmnopqrst", "uvwxyz end"]
    assert r.wrap("  spaced \n out  ") == ["spaced out"]
    assert r.wrap("") == []


def test_sizes_min_height_max_height_and_blank():
    r = renderer()
    one_line = r.render_text("[Observation]: hello")
    assert one_line.shape == (28, 392, 3)  # one 12-px line, padded to min_height
    three = r.render_text("a " * 100)  # 200 characters -> 4 lines of <= 65
    assert three.shape == (4 * 12, 392, 3)
    blank = r.render_text("")
    assert blank.shape == (28, 28, 3) and (blank == 255).all()
    capped = renderer(max_height=40).render_text("\n".join(f"line {i}" for i in range(10)))
    assert capped.shape == (36, 392, 3)  # three whole lines fit in 40 rows: the last three are kept
    full = r.render_text("\n".join(f"line {i}" for i in range(10)))
    assert np.array_equal(capped, full[-36:])


def test_text_is_black_on_white():
    image = renderer().render_text("hello world")
    ink = image[(image != 255).any(-1)]
    assert len(ink) and (ink[:, 0] == ink[:, 1]).all() and (ink[:, 1] == ink[:, 2]).all()  # greys only
    assert (ink == 0).all(-1).any()  # solid black somewhere


def test_highlight_colours_at_known_pixels():
    r = renderer(highlights=(Highlight("[Action]", RED), Highlight("[Observation]", BLUE)))
    image = r.render_text("[Observation]: a [Action]: go")
    cw = r.char_width
    def region(first_char: int, n_chars: int) -> np.ndarray:
        return image[:12, int(first_char * cw) + 1: int((first_char + n_chars) * cw) - 1]
    obs, plain, act = region(0, 13), region(14, 2), region(17, 8)
    assert (obs == BLUE).all(-1).any() and not (obs == RED).all(-1).any()
    assert ((obs[..., 0] == obs[..., 1]) & (obs[..., 2] == 255)).all()  # blue over white only
    assert (act == RED).all(-1).any() and ((act[..., 1] == act[..., 2]) & (act[..., 0] == 255)).all()
    ink = plain[(plain != 255).any(-1)]
    assert len(ink) and (ink[:, 0] == ink[:, 2]).all()  # the 'a' stays grey


def test_color_runs_prefer_the_longest_match():
    hl = parse_highlights("<search>:0,0,255;</search>:0,0,255;<information>:255,0,0")
    runs = color_runs("<search> q </search> <information>x", hl, BLACK)
    assert runs == [("<search>", BLUE), (" q ", BLACK), ("</search>", BLUE), (" ", BLACK),
                    ("<information>", RED), ("x", BLACK)]


def test_highlight_config_forms():
    assert parse_highlights("[Action]::255,0,0; a:b:0,1,2") == (Highlight("[Action]:", RED), Highlight("a:b", (0, 1, 2)))
    assert parse_highlights([{"context": "[Action]", "color": [255, 0, 0]}]) == (Highlight("[Action]", RED),)
    assert parse_highlights("") == () and parse_highlights([]) == () and parse_highlights(None) == ()
    for bad in ("[Action]", "x:1,2", "x:1,2,300", [{"color": [1, 2, 3]}], 5):
        with pytest.raises(ValueError, match="ocr.highlight_configs"):
            parse_highlights(bad)


def test_bad_font_path_is_a_clear_error(tmp_path):
    (tmp_path / "x.ttf").write_text("not a font")
    with pytest.raises(ValueError, match="ocr.font_path"):
        renderer(font_path=str(tmp_path / "x.ttf"))
