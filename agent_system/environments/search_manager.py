"""Environment manager for Search-QA: prompts, history memory, task categories (SPEC §4).

Built by the factory in ``agent_system.environments`` from the ``env`` config section:
``env.max_steps``, ``env.history_length`` (past turns shown in the prompt) and ``env.search``
(``search_url``, ``topk``, ``timeout``, ``max_retries``, ``retry_backoff``, ``max_outage_s``,
``concurrency``). Reset kwargs are the task slot's ``env_kwargs`` (question, ground_truth, data_source,
skill_type) plus ``seed``; the question alone determines the episode, so group copies and paired
validations see the same task, and an evaluation plays each distinct question once
(:func:`evaluation_tasks`). ``task_category(i)`` is the skill type, ``metric_tags(i)`` = [data source,
skill type], the anchor observation is the question plus the latest environment output, and
:meth:`pop_metrics` reports ``search/queries`` and ``search/errors`` (searches that failed after their
retries; the agent saw an error observation). In visual mode (``visual`` set) the shown turns are
rendered as an image, one ``<search> query </search> <information>...</information>`` line per turn,
and the prompt keeps the question and instructions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from agent_system.environments.base import EnvironmentManagerBase, Observation
from agent_system.environments.env_package.search.client import SearchSettings, make_backends
from agent_system.environments.env_package.search.envs import SearchEnvs
from agent_system.environments.env_package.search.projection import SearchAction, parse_action
from agent_system.environments.prompts.search import (
    SEARCH_ACTION_INSTRUCTIONS,
    SEARCH_FIRST_TURN_TEMPLATE,
    SEARCH_HISTORY_ENTRY,
    SEARCH_INVALID_ACTION_LABEL,
    SEARCH_LAST_TURN_NOTE,
    SEARCH_LATER_TURN_TEMPLATE,
    SEARCH_VISUAL_FIRST_TURN_TEMPLATE,
    SEARCH_VISUAL_LATER_TURN_TEMPLATE,
)
from agent_system.environments.visual import VisualContext, flatten


@dataclass(frozen=True)
class _Turn:
    action: SearchAction
    observation: str

    @property
    def shown_action(self) -> str:
        kind = self.action.kind
        return f"<{kind}> {self.action.content} </{kind}>" if kind else SEARCH_INVALID_ACTION_LABEL

    def render(self, number: int) -> str:
        return SEARCH_HISTORY_ENTRY.format(turn=number, action=self.shown_action, observation=self.observation)

    def line(self) -> str:
        """The turn as one line of the history image."""
        return flatten(f"{self.shown_action} {self.observation}")


class SearchEnvironmentManager(EnvironmentManagerBase):
    """Text-in/text-out manager over :class:`SearchEnvs`."""

    def __init__(self, envs: SearchEnvs, history_length: int, visual: VisualContext | None = None):
        if history_length < 0:
            raise ValueError(f"env.history_length={history_length} must be >= 0")
        super().__init__(envs.num_envs)
        self.envs = envs
        self.history_length = history_length
        self.visual = visual
        self._images: list | None = None
        self._done: list[bool] = []
        self._history: list[list[_Turn]] = []
        self._prompts: list[str] = []
        self._anchors: list[str] = []

    def reset(self, kwargs: list[dict[str, Any]]) -> tuple[Observation, list[dict[str, Any]]]:
        questions, infos = self.envs.reset(kwargs)
        self._history = [[] for _ in range(self.num_envs)]
        self._anchors = list(questions)
        self._done = [False] * self.num_envs
        if self.visual is not None:
            self.visual.reset()
        self._prompts = [self._prompt(i) for i in range(self.num_envs)]
        self._render_history()
        return self._observation(), infos

    def step(self, text_actions: list[str | None]) -> tuple[Observation, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if len(text_actions) != self.num_envs:
            raise ValueError(f"step got {len(text_actions)} texts for {self.num_envs} envs")
        actions = [None if text is None else parse_action(text) for text in text_actions]
        observations, rewards, dones, infos = self.envs.step(actions)
        for i, action in enumerate(actions):
            if action is None:
                continue
            if self.visual is not None:
                well_formed = self.visual.read_compression(i, text_actions[i], infos[i])
                infos[i]["is_action_valid"] = bool(infos[i].get("is_action_valid", True)) and well_formed
            self._done[i] = bool(dones[i])
            self._history[i].append(_Turn(action, observations[i]))
            self._anchors[i] = f"{self.envs.task(i).question}\n{observations[i]}"
            self._prompts[i] = self._prompt(i)
        self._render_history()
        return self._observation(), rewards, dones, infos

    def _prompt(self, env_idx: int) -> str:
        task = self.envs.task(env_idx)
        history = self._history[env_idx]
        common = dict(
            skill_context=self.skill_context_fn(task.skill_type), question=task.question,
            max_steps=self.envs.max_steps, instructions=SEARCH_ACTION_INSTRUCTIONS,
        )
        shown = self._shown(env_idx)
        if self.visual is not None:
            first = not history
            template = SEARCH_VISUAL_FIRST_TURN_TEMPLATE if first else SEARCH_VISUAL_LATER_TURN_TEMPLATE
            return template.format(**common, **self._turn_fields(env_idx)) + self.visual.instruction(env_idx, first)
        if not history:
            return SEARCH_FIRST_TURN_TEMPLATE.format(**common)
        first_shown = len(history) - len(shown) + 1
        return SEARCH_LATER_TURN_TEMPLATE.format(
            **common, **self._turn_fields(env_idx),
            history="\n".join(entry.render(first_shown + k) for k, entry in enumerate(shown)),
        )

    def _shown(self, env_idx: int) -> list[_Turn]:
        history = self._history[env_idx]
        return history[-self.history_length :] if self.history_length else []

    def _turn_fields(self, env_idx: int) -> dict[str, Any]:
        history, turn = self._history[env_idx], len(self._history[env_idx]) + 1
        return dict(shown_turns=len(self._shown(env_idx)), past_turns=len(history), turn=turn,
                    last_turn_note=SEARCH_LAST_TURN_NOTE if turn == self.envs.max_steps else "")

    def _render_history(self) -> None:
        if self.visual is not None:
            self._images = self.visual.images([[] if self._done[i] else [t.line() for t in self._shown(i)]
                                               for i in range(self.num_envs)])

    def _observation(self) -> Observation:
        images = None if self._images is None else list(self._images)
        return Observation(text=list(self._prompts), image=images, anchor=list(self._anchors))

    def rollout_stats(self) -> dict[str, float]:
        return self.visual.stats() if self.visual is not None else {}

    def task_category(self, env_idx: int) -> str:
        return self.envs.task(env_idx).skill_type

    def metric_tags(self, env_idx: int) -> list[str]:
        task = self.envs.task(env_idx)
        return [task.data_source, task.skill_type]

    def pop_metrics(self) -> dict[str, float]:
        taken = [backend.counts.take() for backend in self.envs.backends]
        return {"search/queries": float(sum(q for q, _ in taken)), "search/errors": float(sum(e for _, e in taken))}

    def close(self) -> None:
        self.envs.close()
        if self.visual is not None:
            self.visual.close()


def make_manager(env_cfg: Any, split: str, num_envs: int,
                 visual: VisualContext | None = None) -> SearchEnvironmentManager:
    """Build the manager from the ``env`` config section; ``split`` does not change behaviour (the
    task slots carry the questions)."""
    cfg = env_cfg if isinstance(env_cfg, DictConfig) else OmegaConf.create(env_cfg)
    search = cfg.search
    search_url = search.search_url
    if OmegaConf.is_list(search_url):
        search_url = list(OmegaConf.to_container(search_url, resolve=True))
    settings = SearchSettings(
        topk=int(search.topk), timeout=float(search.timeout), max_retries=int(search.max_retries),
        retry_backoff=float(search.retry_backoff), max_outage_s=float(search.max_outage_s),
        concurrency=int(search.concurrency),
    )
    envs = SearchEnvs(num_envs, make_backends(search_url, settings), max_steps=int(cfg.max_steps))
    return SearchEnvironmentManager(envs, history_length=int(cfg.history_length), visual=visual)


def evaluation_tasks(env_cfg: Any, split: str, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each question once: the task slots, keeping the first slot of every question (whitespace-trimmed)."""
    first: dict[str, dict[str, Any]] = {}
    for slot in slots:
        first.setdefault(str(slot.get("question", "")).strip(), slot)
    return list(first.values())
