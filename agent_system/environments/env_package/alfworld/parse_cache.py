"""Memoised TextWorld grammar parses: a step's text generation without re-parsing the same strings.

Every ALFWorld step renders its feedback and admissible commands with TextWorld's context-sensitive
grammar (``textworld.envs.pddl.textgen``), and the renderer re-parses, with a TatSu PEG parser, the same
few hundred template strings again and again: ``ContextSensitiveGrammar.derive`` parses its start string
into symbols, and every conditional symbol and grammar rule condition parses its condition with
``Rule.parse_conjunctive_query``. Parsing was about half of a step's time (cProfile of 120 random-policy
steps: 19.7 of 36 s in ``tatsu``). Both parses are pure functions of their text, so this module memoises
them per process:

- ``textgen._parse_and_convert(text, rule_name=..., trace=...)``: the callers set each returned symbol's
  ``context`` (the game state it renders), so every call gets a deep copy of the cached symbols — a
  fresh tree, as a new parse would give, at a fraction of the cost;
- ``Rule.parse_conjunctive_query(expr)``: the query ``Rule`` is only read (``State.all_assignments``), so
  the cached object is shared.

:func:`install` swaps both in (idempotent). The caches hold parsed templates, never game state; they are
bounded (``MAX_ENTRIES`` each) because a grammar's strings are a fixed, small set.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import textworld.envs.pddl.textgen as textgen
from textworld.logic import Rule

MAX_ENTRIES = 4096  # ALFWorld's grammar renders with a few hundred distinct strings


class CachedSymbolParser:
    """``textgen._parse_and_convert`` through an LRU; each call returns a deep copy of the parse."""

    def __init__(self, parse: Callable[..., list], max_entries: int = MAX_ENTRIES):
        self.parse = parse
        self._cached = functools.lru_cache(maxsize=max_entries)(self._parse)

    def _parse(self, text: str, items: tuple[tuple[str, Any], ...]) -> list:
        return self.parse(text, **dict(items))

    def __call__(self, text: str, **kwargs: Any) -> list:
        return copy.deepcopy(self._cached(text, tuple(sorted(kwargs.items()))))

    def cache_info(self):
        return self._cached.cache_info()

    def cache_clear(self) -> None:
        self._cached.cache_clear()


def _cached_query(parse: Callable[[str], Rule]) -> Callable[[str], Rule]:
    cached = functools.lru_cache(maxsize=MAX_ENTRIES)(parse)
    cached.uncached = parse  # type: ignore[attr-defined]
    return cached


def install() -> CachedSymbolParser:
    """Route both TextWorld parses through the caches (idempotent); returns the symbol parser in use."""
    if not isinstance(textgen._parse_and_convert, CachedSymbolParser):
        textgen._parse_and_convert = CachedSymbolParser(textgen._parse_and_convert)
    if not hasattr(Rule.parse_conjunctive_query, "uncached"):
        Rule.parse_conjunctive_query = staticmethod(_cached_query(Rule.parse_conjunctive_query))
    return textgen._parse_and_convert


def clear() -> None:
    """Forget every cached parse of this process (a benchmark's cold start, like a fresh worker)."""
    install().cache_clear()
    Rule.parse_conjunctive_query.cache_clear()
