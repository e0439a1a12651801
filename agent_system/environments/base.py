"""The contract between the multi-turn rollout loop and every environment.

An *environment manager* owns a batch of ``num_envs`` parallel episodes. It turns raw environment
observations into prompts (task text, skill context, history window, admissible actions), parses
model text into environment actions through the environment's *projection*, and keeps the
per-episode memory. The rollout loop (``agent_system.multi_turn_rollout``) only ever sees this API:

    obs, infos = manager.reset(kwargs)                 # one kwargs dict per env
    obs, rewards, dones, infos = manager.step(texts)   # one text (or None) per env

``obs`` is an :class:`Observation` dict: ``text`` (the full prompt text for each env), ``image``
(``None`` in text mode, else one ``uint8`` (height, width, 3) history image per env) and ``anchor`` (the raw environment observation
without history; GiGPO groups step samples by it).

Reset kwargs: every dict carries ``"seed"`` (an int; group copies get the same seed and therefore
the same game / question) plus whatever the task slot's ``env_kwargs`` hold (e.g. the question of a
Search-QA task). Environments pick their task deterministically from these, so a run is
reproducible and the paired with/without-skill validations see identical tasks.

Step texts: ``None`` marks an env whose episode is already over; the manager does not touch it and
returns its last observation with reward 0 and ``done=True``.

Infos (one dict per env) always contain ``"won"`` (bool) and, after a step, ``"is_action_valid"``
(bool). Managers also answer :meth:`task_category` (the skill curriculum's key),
:meth:`metric_tags` (names under which success is reported, e.g. ``pick_and_place`` ->
``pick_and_place_success_rate``), :meth:`pop_metrics` (counters such as failed searches, summed over
the batches of an evaluation) and :meth:`rollout_stats` (statistics such as ``ocr/*`` rendering time).

Evaluation tasks: validation and the final test play *distinct* tasks. Each manager module names the
distinct tasks of a split with ``evaluation_tasks(env_cfg, split, slots) -> list[dict]`` (reset kwargs
without the seed): ALFWorld lists every game of the split, Search-QA the distinct questions of the task
slots. A module without that function gets :func:`distinct_slots`: the task slots, duplicates removed.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, TypedDict

import numpy as np


class Observation(TypedDict):
    text: list[str]
    image: list[Any] | None
    anchor: list[str]


SkillContextFn = Callable[[str], str]
"""Maps a task category to the skill text for a prompt's ``{skill_context}`` slot ('' = none)."""


def no_skills(category: str) -> str:
    return ""


def distinct_slots(slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The task slots with exact duplicates removed, in order (the default evaluation tasks)."""
    seen: set[str] = set()
    kept = []
    for slot in slots:
        key = repr(sorted(slot.items()))
        if key not in seen:
            seen.add(key)
            kept.append(slot)
    return kept


class EnvironmentManagerBase(ABC):
    """Batched, text-in/text-out environment manager (see module docstring for the contract)."""

    def __init__(self, num_envs: int):
        self.num_envs = num_envs
        self.skill_context_fn: SkillContextFn = no_skills

    def set_skill_context_fn(self, fn: SkillContextFn) -> None:
        """Install the function that yields the skill text for a task category (curriculum hook)."""
        self.skill_context_fn = fn

    @abstractmethod
    def reset(self, kwargs: list[dict[str, Any]]) -> tuple[Observation, list[dict[str, Any]]]:
        """Start ``len(kwargs) == num_envs`` new episodes."""

    @abstractmethod
    def step(
        self, text_actions: list[str | None]
    ) -> tuple[Observation, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Apply one model output per env; returns (obs, rewards[float32], dones[bool], infos)."""

    @abstractmethod
    def task_category(self, env_idx: int) -> str:
        """The current episode's task category (a key of ``task_to_skill`` in a skill mapping)."""

    def metric_tags(self, env_idx: int) -> list[str]:
        """Tags under which this episode's success is also reported (``<tag>_success_rate``)."""
        return [self.task_category(env_idx)]

    def rollout_stats(self) -> dict[str, float]:
        """Statistics of the episodes since the last reset (e.g. ``ocr/*`` rendering time and cache hit
        rate), read by the rollout loop when a batch of episodes ends; not summable, so reported with the
        training rollout only. None by default."""
        return {}

    def pop_metrics(self) -> dict[str, float]:
        """Counters accumulated since the last call (e.g. ``search/errors``), then reset; summed per rollout."""
        return {}

    def close(self) -> None:
        """Release workers; safe to call twice."""
