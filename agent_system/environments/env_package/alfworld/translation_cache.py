"""Reuse of loaded game data across resets of the same game: a bounded cache of PDDL translations.

Loading and resetting an ALFWorld game spends ~85% of its time in fast-downward's PDDL -> SAS translation
(``fast_downward.pddl2sas``), and TextWorld runs it four times per reset: ``PddlEnv.load`` and
``PddlEnv.reset`` each build a ``PddlState``, which translates the (domain, problem) pair twice — plainly
(the task the game is played on) and optimised for search (``optimize=True``: unreachable facts and
unimportant variables pruned), the task ``PddlState.replan`` searches when a game is asked for
``policy_commands`` or a walkthrough. Our sessions never ask for a plan, so the optimised translation is
never searched: this module answers ``optimize=True`` with the plain translation (a complete encoding of
the same task, so a plan searched on it would still be a valid plan, only found more slowly), and
memoises the translation, a pure function of its text inputs whose result (the parsed task and the SAS
text) is only read afterwards. The first reset of a game translates once instead of four times, later
resets of the same game not at all.

:func:`install` points TextWorld's PDDL logic module (``textworld.envs.pddl.logic``, the only caller) at a
:class:`CachedTranslator`, a view of the ``fast_downward`` module whose ``pddl2sas`` goes through an LRU of
``CACHE_GAMES`` games. A game's episode state lives in its ``PddlState`` and fast-downward's loaded
library, which are rebuilt at every reset, never in the cache.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import fast_downward
import textworld.envs.pddl.logic as pddl_logic

CACHE_GAMES = 32  # games whose translations a process keeps (a few MB each)


class CachedTranslator:
    """``fast_downward`` with a memoised ``pddl2sas`` that ignores ``optimize`` (see the module docstring);
    every other attribute is the module's own."""

    def __init__(self, module: ModuleType, max_games: int = CACHE_GAMES):
        self._module = module
        self.translations = functools.lru_cache(maxsize=max_games)(module.pddl2sas)

    def pddl2sas(self, domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        return self.translations(domain, problem, verbose)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def clear() -> None:
    """Forget every cached translation of this process (a benchmark's cold start, like a fresh worker)."""
    install().translations.cache_clear()


def install() -> CachedTranslator:
    """Route TextWorld's translations through the cache (idempotent); returns the translator in use."""
    if not isinstance(pddl_logic.fast_downward, CachedTranslator):
        pddl_logic.fast_downward = CachedTranslator(fast_downward)
    return pddl_logic.fast_downward
