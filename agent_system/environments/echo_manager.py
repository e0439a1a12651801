"""Echo environment manager (see ``env_package/echo``): in-process, no workers needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent_system.environments.base import EnvironmentManagerBase, Observation
from agent_system.environments.categories import ECHO_CATEGORIES
from agent_system.environments.env_package.echo.envs import EchoGame
from agent_system.environments.env_package.echo.projection import echo_projection
from agent_system.environments.prompts.echo import ECHO_HISTORY_ENTRY, ECHO_TEMPLATE

CATEGORY = ECHO_CATEGORIES[0]


class EchoEnvironmentManager(EnvironmentManagerBase):
    def __init__(self, num_envs: int, words: list[str], max_steps: int, history_length: int):
        super().__init__(num_envs)
        if not words:
            raise ValueError("env.echo.words is empty; give at least one word, e.g. env.echo.words=[apple]")
        self.words = list(words)
        self.max_steps = max_steps
        self.history_length = history_length
        self.games: list[EchoGame] = []
        self.scores: list[list[float]] = []

    def reset(self, kwargs: list[dict[str, Any]]) -> tuple[Observation, list[dict[str, Any]]]:
        if len(kwargs) != self.num_envs:
            raise ValueError(f"reset got {len(kwargs)} kwargs dicts for {self.num_envs} envs")
        self.games = [EchoGame(kw.get("word") or self.words[int(kw["seed"]) % len(self.words)], self.max_steps)
                      for kw in kwargs]
        self.scores = [[] for _ in kwargs]
        return self._observation(), [{"won": False} for _ in kwargs]

    def step(self, text_actions: list[str | None]) -> tuple[Observation, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        infos: list[dict[str, Any]] = [{"won": g.won} for g in self.games]
        active = [i for i, t in enumerate(text_actions) if t is not None]
        actions, valids = echo_projection([text_actions[i] for i in active])
        for i, action, valid in zip(active, actions, valids):
            rewards[i] = self.games[i].step(action)
            self.scores[i].append(float(rewards[i]))
            infos[i] = {"won": self.games[i].won, "is_action_valid": valid}
        dones = np.array([g.done for g in self.games])
        return self._observation(), rewards, dones, infos

    def task_category(self, env_idx: int) -> str:
        return CATEGORY

    def _prompt(self, i: int) -> str:
        game = self.games[i]
        start = max(0, len(game.attempts) - self.history_length)
        history = "".join(ECHO_HISTORY_ENTRY.format(n=n + 1, attempt=game.attempts[n], score=self.scores[i][n])
                          for n in range(start, len(game.attempts)))
        skill = self.skill_context_fn(CATEGORY).strip("\n")
        return ECHO_TEMPLATE.format(skill_context=f"{skill}\n\n" if skill else "", word=game.word, history=history)

    def _observation(self) -> Observation:
        return Observation(text=[self._prompt(i) for i in range(self.num_envs)], image=None,
                           anchor=[f"{g.word}|{'|'.join(g.attempts)}" for g in self.games])


def make_manager(env_cfg: Any, split: str, num_envs: int) -> EchoEnvironmentManager:
    return EchoEnvironmentManager(num_envs, list(env_cfg.echo.words), env_cfg.max_steps, env_cfg.history_length)


def evaluation_tasks(env_cfg: Any, split: str, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct word once: the slots' words when they carry one, else ``env.echo.words``."""
    words = [slot["word"] for slot in slots if slot.get("word")] or list(env_cfg.echo.words)
    return [{"word": word} for word in dict.fromkeys(words)]
