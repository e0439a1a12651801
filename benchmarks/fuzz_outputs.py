"""Fuzzed model outputs (issue 15, item 5): random and adversarial texts through each manager's ``step``.

Every text is *built* from parts whose validity is known (the label), so the check does not re-run the
parser it tests: tag blocks present 0, 1 or 2 times, in either order, nested, reversed, unclosed, empty or
blank, tags in mixed case, CJK letters (ALFWorld rejects them), near-miss tags (``< action>``,
``<actio>``, ``&lt;action&gt;``) and junk drawn from ASCII, control characters, emoji, combining marks,
right-to-left text and lone surrogates. A quarter of the texts are pure junk (never valid).

- ALFWorld (SPEC §3): valid iff exactly one ``<think>…</think>`` and one ``<action>…</action>`` block,
  neither inside the other, a non-blank action and no CJK letter; the command sent is the action,
  stripped and lower-cased.
- Search-QA (SPEC §4): valid iff exactly one action tag pair (``search`` or ``answer``), opened then
  closed, of the same kind, with non-blank content; thinking text around it is free.
- Compression tag (AgentOCR): well formed iff at most one ``<compression>`` opening tag.

:func:`run_manager` feeds the texts batch by batch to a real manager (finished episodes get ``None``
and the batch is reset when every episode is over) and counts crashes, outputs whose
``is_action_valid`` differs from the label, and wins after an invalid output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable

from agent_system.ocr.compression import parse_compression

# Junk that can never form or break a tag: no '<' or '>', no CJK (labelled separately).
_JUNK_POOLS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;:!?'\"()[]{}/\\|-_=+*&^%$#@~`",
    " \t\n\r\x00\x0b\x0c\x1b\x7f\u00a0\u2028\u2029\ufeff\u200b",
    "éüßøİıΣσςЖжعربيעברית\u0301\u0308\u202e\u202d",
    "😀🙃🤖👍🏽🇫🇷\U0010ffff\ufffd",
    "\ud800\udfff",  # lone surrogates (what a broken detokenizer could hand over)
)
_NEAR_MISS = ("< action>", "<action >", "<actio>", "</actio>", "<action/>", "&lt;action&gt;", "<act ion>",
              "< think>", "<thinkk>", "</ think>", "<search >", "<searc>", "</answe>", "<answer/>",
              "<compression >", "<compresion>", "<>", "</>", "<<", ">>")
_CJK = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就要下可以把会"


def _case(rng: random.Random, tag: str) -> str:
    return "".join(c.upper() if rng.random() < 0.3 else c for c in tag)


def _junk(rng: random.Random, max_len: int = 24) -> str:
    parts = []
    for _ in range(rng.randint(0, max_len)):
        if rng.random() < 0.08:
            parts.append(rng.choice(_NEAR_MISS))
        else:
            parts.append(rng.choice(rng.choice(_JUNK_POOLS)))
    return "".join(parts)


def _content(rng: random.Random) -> tuple[str, bool]:
    """Text inside a tag pair and whether it is non-blank."""
    kind = rng.random()
    if kind < 0.1:
        return "", False
    if kind < 0.2:
        return rng.choice((" ", "\n\t ", "\u00a0 ", "\r\n")), False  # blank once stripped
    word = rng.choice(("go to cabinet 1", "take apple 1 from countertop 2", "look", "who wrote hamlet",
                       "1919", "Paris", "open fridge 1"))
    return _junk(rng, 3) + word + _junk(rng, 3), True


@dataclass
class Sample:
    text: str
    valid: bool  # the label, from how the text was built


def _block(rng: random.Random, name: str, content: str, shape: str) -> str:
    opening, closing = _case(rng, f"<{name}>"), _case(rng, f"</{name}>")
    return {"ok": opening + content + closing, "unclosed": opening + content, "unopened": content + closing,
            "reversed": closing + content + opening}[shape]


def alfworld_sample(rng: random.Random) -> Sample:
    if rng.random() < 0.25:
        return Sample(_junk(rng, 200), False)
    shapes = ("ok",) * 5 + ("unclosed", "unopened", "reversed")
    n_think, n_action = rng.choice((0, 1, 1, 1, 2)), rng.choice((0, 1, 1, 1, 2))
    think_shape, action_shape = rng.choice(shapes), rng.choice(shapes)
    content, nonblank = _content(rng)
    think = "".join(_block(rng, "think", _junk(rng, 8) + "plan", think_shape) for _ in range(n_think))
    action = "".join(_block(rng, "action", content, action_shape) for _ in range(n_action))
    order = rng.choice(("think-first", "action-first", "action-in-think"))
    nested = order == "action-in-think" and n_think > 0 and n_action > 0
    if nested:  # the action block(s) inside the first think block
        think = (_case(rng, "<think>") + _junk(rng, 8) + action + "plan" + _case(rng, "</think>")
                 + "".join(_block(rng, "think", "more", think_shape) for _ in range(n_think - 1)))
        text = _junk(rng) + think + _junk(rng)
    else:
        first, second = (think, action) if order == "think-first" else (action, think)
        text = _junk(rng) + first + _junk(rng) + second + _junk(rng)
    cjk = rng.random() < 0.15
    if cjk:
        at = rng.randint(0, len(text))
        text = text[:at] + rng.choice(_CJK) + text[at:]
    valid = (n_think == 1 and n_action == 1 and think_shape == "ok" and action_shape == "ok" and not nested
             and nonblank and not cjk)
    return Sample(text, valid)


def search_sample(rng: random.Random) -> Sample:
    if rng.random() < 0.25:
        return Sample(_junk(rng, 200), False)
    kind = rng.choice(("search", "answer"))
    n_blocks = rng.choice((0, 1, 1, 1, 2))
    shape = rng.choice(("ok", "ok", "ok", "unclosed", "unopened", "reversed", "mismatched"))
    content, nonblank = _content(rng)
    blocks = []
    for _ in range(n_blocks):
        if shape == "mismatched":
            other = "answer" if kind == "search" else "search"
            blocks.append(_case(rng, f"<{kind}>") + content + _case(rng, f"</{other}>"))
        else:
            blocks.append(_block(rng, kind, content, shape))
        kind = rng.choice(("search", "answer"))  # a repeat may be of either kind
    think = _block(rng, "think", _junk(rng, 8), rng.choice(("ok", "unclosed"))) if rng.random() < 0.7 else ""
    text = _junk(rng) + think + _junk(rng) + _junk(rng).join(blocks) + _junk(rng)
    return Sample(text, n_blocks == 1 and shape == "ok" and nonblank)


def compression_sample(rng: random.Random) -> Sample:
    n_tags = rng.choice((0, 1, 1, 2, 3))
    values = ("2", " 3.5 ", "nan", "inf", "-1e309", "1_0", "\u0661\u0662", "", "abc", "1e400", "0x10", "4")
    tags = [_case(rng, "<compression>") + rng.choice(values) + _case(rng, "</compression>") for _ in range(n_tags)]
    text = _junk(rng) + "<think>x</think><action>look</action>" + _junk(rng).join(tags) + _junk(rng)
    return Sample(text, n_tags <= 1)


@dataclass
class FuzzReport:
    outputs: int = 0
    invalid_outputs: int = 0
    crashes: int = 0
    validity_mismatches: int = 0  # is_action_valid differs from the label (either way)
    invalid_counted_valid: int = 0  # the figure that must be 0
    wins_after_invalid: int = 0
    examples: list[str] = field(default_factory=list)

    def ok(self) -> bool:
        return not (self.crashes or self.validity_mismatches or self.wins_after_invalid)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "examples"} | {"examples": self.examples[:3]}

    def note(self, text: str, why: str) -> None:
        if len(self.examples) < 3:
            self.examples.append(f"{why}: {text[:120]!r}")


def fuzz_compression(count: int, seed: int) -> FuzzReport:
    """``parse_compression`` (the hook every visual manager calls in ``step``) on ``count`` texts."""
    rng, report = random.Random(seed), FuzzReport()
    for _ in range(count):
        sample = compression_sample(rng)
        report.outputs += 1
        report.invalid_outputs += not sample.valid
        try:
            factor, well_formed = parse_compression(sample.text)
        except Exception as err:  # noqa: BLE001 - a crash is what we count
            report.crashes += 1
            report.note(sample.text, f"crash {type(err).__name__}")
            continue
        if well_formed != sample.valid or not 1.0 <= factor <= 5.0:
            report.validity_mismatches += 1
            report.invalid_counted_valid += well_formed and not sample.valid
            report.note(sample.text, f"well_formed={well_formed} factor={factor}")
    return report


def run_manager(manager: Any, make_sample: Callable[[random.Random], Sample], count: int, seed: int,
                reset_kwargs: Callable[[int], list[dict[str, Any]]]) -> FuzzReport:
    """Feed ``count`` fuzzed outputs through ``manager.step`` (see the module docstring);
    ``reset_kwargs(episode)`` gives the reset kwargs of the batch's ``episode``-th reset."""
    rng, report, episode = random.Random(seed), FuzzReport(), 0
    manager.reset(reset_kwargs(episode))
    done = [False] * manager.num_envs
    while report.outputs < count:
        samples = [None if d else make_sample(rng) for d in done]
        try:
            _, _, dones, infos = manager.step([None if s is None else s.text for s in samples])
        except Exception as err:  # noqa: BLE001 - a crash is what we count
            report.crashes += 1
            report.note(next(s.text for s in samples if s is not None), f"crash {type(err).__name__}: {err}")
            episode += 1
            manager.reset(reset_kwargs(episode))
            done = [False] * manager.num_envs
            continue
        for i, sample in enumerate(samples):
            if sample is None:
                continue
            report.outputs += 1
            report.invalid_outputs += not sample.valid
            counted_valid = bool(infos[i]["is_action_valid"])
            if counted_valid != sample.valid:
                report.validity_mismatches += 1
                report.invalid_counted_valid += counted_valid
                report.note(sample.text, f"is_action_valid={counted_valid}, label {sample.valid}")
            if not sample.valid and infos[i].get("won"):
                report.wins_after_invalid += 1
                report.note(sample.text, "won after an invalid output")
        done = [bool(d) for d in dones]
        if all(done):
            episode += 1
            manager.reset(reset_kwargs(episode))
            done = [False] * manager.num_envs
    return report
