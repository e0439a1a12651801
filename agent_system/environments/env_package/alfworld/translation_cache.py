"""Reuse of loaded game data across resets of the same game: a bounded cache of PDDL translations.

Loading and resetting an ALFWorld game spends ~85% of its time in fast-downward's PDDL -> SAS translation
(``fast_downward.pddl2sas``), and TextWorld runs it four times per reset: ``PddlEnv.load`` and
``PddlEnv.reset`` each build a ``PddlState``, which translates the (domain, problem) pair twice (plain, and
optimised for replanning). The translation is a pure function of its text inputs and its result (the
parsed task and the SAS text) is only read afterwards, so this module memoises it: the first reset of a
game translates twice instead of four times, later resets of the same game not at all.

:func:`install` points TextWorld's PDDL logic module (``textworld.envs.pddl.logic``, the only caller) at a
:class:`CachedTranslator`, a view of the ``fast_downward`` module whose ``pddl2sas`` goes through an LRU of
``CACHE_GAMES`` games (two entries per game). A game's episode state lives in its ``PddlState`` and
fast-downward's loaded library, which are rebuilt at every reset, never in the cache.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import fast_downward
import textworld.envs.pddl.logic as pddl_logic

CACHE_GAMES = 32  # games whose translations a process keeps (a few MB each)


class CachedTranslator:
    """``fast_downward`` with a memoised ``pddl2sas``; every other attribute is the module's own."""

    def __init__(self, module: ModuleType, max_games: int = CACHE_GAMES):
        self._module = module
        self.pddl2sas = functools.lru_cache(maxsize=2 * max_games)(module.pddl2sas)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def clear() -> None:
    """Forget every cached translation of this process (a benchmark's cold start, like a fresh worker)."""
    install().pddl2sas.cache_clear()


def install() -> CachedTranslator:
    """Route TextWorld's translations through the cache (idempotent); returns the translator in use."""
    if not isinstance(pddl_logic.fast_downward, CachedTranslator):
        pddl_logic.fast_downward = CachedTranslator(fast_downward)
    return pddl_logic.fast_downward
