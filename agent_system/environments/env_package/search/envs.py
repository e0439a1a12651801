"""Batched Search-QA episodes (SPEC §4).

Each episode holds one question. Per turn the model either searches (``<search> q </search>``; the
top-k passages come back as ``<information>Doc 1: ... </information>``) or answers
(``<answer> a </answer>``; reward = exact match against any gold answer, the episode ends, ``won`` =
reward == 1). An invalid output executes nothing: the observation is a format reminder and the episode
goes on. After ``max_steps`` turns without an answer the episode ends with reward 0.

All searches of a turn are sent as one batch per backend, backends in parallel threads; env ``i`` uses
backend ``i % len(backends)``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent_system.environments.categories import SEARCH_SKILL_TYPES
from agent_system.environments.env_package.search.answers import exact_match, gold_answer_list
from agent_system.environments.env_package.search.classifier import classify_question
from agent_system.environments.env_package.search.client import SearchBackend, format_information
from agent_system.environments.env_package.search.corpus import Document
from agent_system.environments.env_package.search.projection import SearchAction

INVALID_ACTION_FEEDBACK = (
    "That output was not a valid action, so nothing happened. Reply with exactly one action: "
    "<search> your query </search> to look something up, or <answer> your final answer </answer>."
)


@dataclass(frozen=True)
class SearchTask:
    """One question, from a task slot's ``env_kwargs`` (question, ground_truth, data_source, skill_type)."""

    question: str
    gold_answers: tuple[str, ...]
    data_source: str
    skill_type: str

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> SearchTask:
        question = kwargs.get("question")
        if not isinstance(question, str) or not question.strip():
            raise ValueError(
                f"Search-QA reset kwargs need a non-empty 'question' string, got {question!r}; "
                "build the data with examples/data_preprocess/preprocess_search_r1_dataset.py"
            )
        if "ground_truth" not in kwargs:
            raise ValueError(f"Search-QA reset kwargs for {question!r} lack 'ground_truth' (the gold answers)")
        data_source = str(kwargs.get("data_source") or "unknown")
        skill_type = kwargs.get("skill_type") or classify_question(question, data_source)
        if skill_type not in SEARCH_SKILL_TYPES:
            raise ValueError(f"skill_type {skill_type!r} of {question!r} is not one of {SEARCH_SKILL_TYPES}")
        return cls(question.strip(), tuple(gold_answer_list(kwargs["ground_truth"])), data_source, skill_type)


@dataclass
class _Episode:
    task: SearchTask
    turns: int = 0
    done: bool = False
    won: bool = False


class SearchEnvs:
    """``num_envs`` Search-QA episodes stepped together."""

    def __init__(self, num_envs: int, backends: list[SearchBackend], max_steps: int):
        if num_envs < 1 or max_steps < 1 or not backends:
            raise ValueError(f"need num_envs >= 1, env.max_steps >= 1 and a backend (got {num_envs}, {max_steps})")
        self.num_envs = num_envs
        self.backends = backends
        self.max_steps = max_steps
        self._episodes: list[_Episode] = []
        self._pool = ThreadPoolExecutor(max_workers=len(backends), thread_name_prefix="search")

    def task(self, env_idx: int) -> SearchTask:
        return self._episodes[env_idx].task

    def reset(self, kwargs: list[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
        """Start one episode per kwargs dict; the observation is the question."""
        if len(kwargs) != self.num_envs:
            raise ValueError(f"reset got {len(kwargs)} kwargs dicts for {self.num_envs} envs")
        self._episodes = [_Episode(SearchTask.from_kwargs(kw)) for kw in kwargs]
        return [episode.task.question for episode in self._episodes], [self._info(i) for i in range(self.num_envs)]

    def step(
        self, actions: list[SearchAction | None]
    ) -> tuple[list[str], np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Apply one parsed action per env (None for finished episodes)."""
        if len(actions) != self.num_envs or len(self._episodes) != self.num_envs:
            raise ValueError(f"step got {len(actions)} actions for {self.num_envs} envs (call reset first)")
        observations = [""] * self.num_envs
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        searches: dict[int, list[tuple[int, str]]] = {}
        for i, (episode, action) in enumerate(zip(self._episodes, actions)):
            if action is None:
                if not episode.done:
                    raise ValueError(f"env {i} got no action (None) but its episode is still running")
                continue
            if episode.done:
                raise ValueError(f"env {i} got an action after its episode ended; pass None for finished envs")
            episode.turns += 1
            episode.done = episode.turns >= self.max_steps
            if not action.is_valid:
                observations[i] = INVALID_ACTION_FEEDBACK
            elif action.kind == "answer":
                rewards[i] = exact_match(action.content, episode.task.gold_answers)
                episode.done, episode.won = True, bool(rewards[i] == 1.0)
            elif not episode.done:  # a search on the last turn would never be read
                searches.setdefault(i % len(self.backends), []).append((i, action.content))
        for env_indices, documents in self._run_searches(searches):
            for i, docs in zip(env_indices, documents):
                observations[i] = format_information(docs)
        infos = [self._info(i, action) for i, action in enumerate(actions)]
        dones = np.array([episode.done for episode in self._episodes], dtype=bool)
        return observations, rewards, dones, infos

    def _run_searches(
        self, searches: dict[int, list[tuple[int, str]]]
    ) -> Iterator[tuple[tuple[int, ...], list[list[Document]]]]:
        """Yield (env indices, documents per env) for each backend's batch, backends in parallel."""
        def run(backend_idx: int):
            env_indices, queries = zip(*searches[backend_idx])
            return env_indices, self.backends[backend_idx].search(list(queries))

        return self._pool.map(run, sorted(searches))

    def _info(self, env_idx: int, action: SearchAction | None = None) -> dict[str, Any]:
        episode = self._episodes[env_idx]
        return {
            "won": episode.won,
            "is_action_valid": action is not None and action.is_valid,
            "action": None if action is None else (action.kind or "invalid"),
            "turn": episode.turns,
            "data_source": episode.task.data_source,
            "skill_type": episode.task.skill_type,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for backend in self.backends:
            backend.close()
