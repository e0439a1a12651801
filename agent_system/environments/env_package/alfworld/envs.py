"""A batch of ALFWorld games played in parallel, one Ray actor (process) per environment.

The caller has already run ``ray.init``. Each actor runs a :class:`GameSession` and asks Ray for
``num_cpus_per_worker`` CPUs (``env.resources_per_worker.num_cpus``); all actors of a batch receive
their command in the same round, so a step takes as long as the slowest game.

Fault tolerance: when an actor dies (or its game raises) during a step, or does not answer within
``step_timeout_s`` (``env.step_timeout_s``; all actors of a round share one deadline, which starts once
every actor has started), the actor is
replaced by a fresh one, that env's episode ends as a failure (``done``, ``won=False``, reward 0,
``info["worker_failed"]=True``) and the other envs carry on, so the rollout always completes. A reset
whose actor died or hung is retried once on a fresh actor; a second failure is an error naming the game.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from agent_system.environments.env_package.alfworld.games import GameSpec
from agent_system.environments.env_package.alfworld.session import GameSession, StepResult

logger = logging.getLogger(__name__)

WORKER_FAILED_OBSERVATION = "The environment worker stopped unexpectedly; this episode has ended."
_WORKER_ERRORS = (RayActorError, RayTaskError, GetTimeoutError)


@dataclass
class EnvSlot:
    """What the batch remembers about one env between calls."""

    worker: Any  # Ray actor handle of a GameSession
    game: GameSpec | None = None
    observation: str = ""
    done: bool = True
    info: dict[str, Any] | None = None


class AlfworldEnvs:
    """``num_envs`` ALFWorld games stepped in parallel (gym-vector style, one actor per env)."""

    def __init__(self, num_envs: int, max_steps: int, num_cpus_per_worker: float, step_timeout_s: float):
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs} must be >= 1")
        if num_cpus_per_worker <= 0:
            raise ValueError(f"env.resources_per_worker.num_cpus={num_cpus_per_worker} must be > 0")
        if step_timeout_s <= 0:
            raise ValueError(f"env.step_timeout_s={step_timeout_s} must be > 0")
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.step_timeout_s = step_timeout_s
        self._actor_cls = ray.remote(GameSession).options(num_cpus=num_cpus_per_worker)
        self._slots = [EnvSlot(worker=self._spawn()) for _ in range(num_envs)]

    @property
    def workers(self) -> list[Any]:
        """The Ray actor handle of each env (a replaced worker shows up here under its new handle)."""
        return [slot.worker for slot in self._slots]

    def reset(self, games: list[GameSpec]) -> tuple[list[str], list[dict[str, Any]]]:
        """Load ``games[i]`` into env ``i``; returns (observations, infos)."""
        if len(games) != self.num_envs:
            raise ValueError(f"reset got {len(games)} games for {self.num_envs} envs")
        self._wait_started(self._slots)
        futures = [slot.worker.reset.remote(game.path) for slot, game in zip(self._slots, games)]
        answered = self._answered(futures)
        for i, (slot, game, future) in enumerate(zip(self._slots, games, futures)):
            try:
                result = self._result(future, answered)
            except (RayActorError, GetTimeoutError) as err:
                logger.warning("ALFWorld worker %d failed during reset (%s); retrying on a new worker", i, err)
                self._replace_worker(slot)
                self._wait_started([slot])
                try:
                    result = ray.get(slot.worker.reset.remote(game.path), timeout=self.step_timeout_s)
                except GetTimeoutError as again:
                    raise RuntimeError(f"ALFWorld could not load {game.path} within env.step_timeout_s="
                                       f"{self.step_timeout_s:g}s on two workers; raise env.step_timeout_s if the "
                                       "machine is overloaded, or remove the game") from again
            slot.game = game
            self._record(slot, result, worker_failed=False)
        return [s.observation for s in self._slots], [dict(s.info) for s in self._slots]

    def step(self, commands: list[str | None]) -> tuple[list[str], list[float], list[bool], list[dict[str, Any]]]:
        """Apply ``commands[i]`` to env ``i``; ``None`` skips an env whose episode is over.

        Returns (observations, rewards, dones, infos); a skipped env repeats its last observation and
        info with reward 0 and ``done=True``.
        """
        if len(commands) != self.num_envs:
            raise ValueError(f"step got {len(commands)} commands for {self.num_envs} envs")
        for i, (slot, command) in enumerate(zip(self._slots, commands)):
            if command is not None and slot.done:
                raise ValueError(f"env {i} has no running episode (done or never reset); pass None for it")
        futures = {
            i: self._slots[i].worker.step.remote(command) for i, command in enumerate(commands) if command is not None
        }
        rewards = [0.0] * self.num_envs
        answered = self._answered(list(futures.values()))
        for i, future in futures.items():
            slot = self._slots[i]
            try:
                result = self._result(future, answered)
            except _WORKER_ERRORS as err:
                logger.warning("ALFWorld worker %d failed mid-episode (%s); episode counted as failed", i, err)
                self._replace_worker(slot)
                result = StepResult(WORKER_FAILED_OBSERVATION, reward=0.0, done=True, won=False)
                self._record(slot, result, worker_failed=True)
                continue
            rewards[i] = result.reward
            self._record(slot, result, worker_failed=False)
        return (
            [s.observation for s in self._slots],
            rewards,
            [s.done for s in self._slots],
            [dict(s.info) for s in self._slots],
        )

    def close(self) -> None:
        """Stop every worker; safe to call twice."""
        for slot in self._slots:
            ray.kill(slot.worker, no_restart=True)
        self._slots = []

    def _wait_started(self, slots: list[EnvSlot]) -> None:
        """Wait until the slots' actors have started (process, imports): start-up is not part of a call's
        timeout. A worker that died since its last call (e.g. between episodes) is replaced here."""
        for slot, ready in [(slot, slot.worker.__ray_ready__.remote()) for slot in slots]:
            try:
                ray.get(ready)
            except RayActorError as err:
                logger.warning("ALFWorld worker died between calls (%s); replacing it", err)
                self._replace_worker(slot)
                ray.get(slot.worker.__ray_ready__.remote())

    def _answered(self, futures: list[Any]) -> set[Any]:
        """The calls that finished within ``step_timeout_s`` (they all started together: one deadline)."""
        ready, _ = ray.wait(futures, num_returns=len(futures), timeout=self.step_timeout_s)
        return set(ready)

    def _result(self, future: Any, answered: set[Any]) -> Any:
        if future not in answered:
            raise GetTimeoutError(f"no answer within env.step_timeout_s={self.step_timeout_s:g}s")
        return ray.get(future)

    def _spawn(self) -> Any:
        return self._actor_cls.remote(self.max_steps)

    def _replace_worker(self, slot: EnvSlot) -> None:
        ray.kill(slot.worker, no_restart=True)
        slot.worker = self._spawn()

    @staticmethod
    def _record(slot: EnvSlot, result: StepResult, worker_failed: bool) -> None:
        slot.observation = result.observation
        slot.done = result.done
        slot.info = {
            "won": result.won,
            "admissible_commands": list(result.admissible_commands),
            "gamefile": slot.game.path,
            "task_type": slot.game.task_type,
            "worker_failed": worker_failed,
        }
