"""A batch of ALFWorld games played in parallel by a few worker processes, several envs per worker.

The caller has already run ``ray.init``. The ``num_envs`` envs are split into ``num_workers`` contiguous
blocks (so group copies of a task, which sit side by side, share a worker); each block is one Ray actor
(:class:`EnvWorker`) holding a :class:`GameSession` per env. A reset or step sends one call per worker
carrying all its envs' commands, so a round costs one Ray round trip per worker instead of one per env,
and the process overhead (interpreter, Ray, TextWorld: ~150 MB) is paid once per worker instead of once
per env. ``num_workers`` (``env.num_workers``) defaults to the cores the envs reserve,
``ceil(num_envs * num_cpus_per_env)``, with ``num_cpus_per_env`` = ``env.resources_per_worker.num_cpus``
(verl-agent's per-env reservation, kept): each worker asks Ray for that many CPUs per env it holds
(:func:`worker_layout`).

Fault tolerance: when a worker dies during a step, or does not answer within ``step_timeout_s``
(``env.step_timeout_s``; all workers of a round share one deadline, which starts once every worker has
started), it is replaced by a fresh one and **every env it was stepping** ends its episode as a failure
(``done``, ``won=False``, reward 0, ``info["worker_failed"]=True``); the other workers' envs carry on, so
the rollout always completes. This is the trade-off of sharing a process: one dead worker fails all its
envs' episodes (``ceil(num_envs / num_workers)`` at most), where one actor per env lost one. A game that
raises fails only its own env (same info), and its worker stays. A reset whose worker died or hung is
retried once on a fresh worker; a second failure, or a game that raises while loading, is an error
naming the game.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from agent_system.environments.env_package.alfworld.games import GameSpec
from agent_system.environments.env_package.alfworld.session import StepResult
from agent_system.environments.env_package.alfworld.worker import EnvError, EnvWorker

logger = logging.getLogger(__name__)

WORKER_FAILED_OBSERVATION = "The environment worker stopped unexpectedly; this episode has ended."
_WORKER_ERRORS = (RayActorError, RayTaskError, GetTimeoutError)


def worker_layout(num_envs: int, num_cpus_per_env: float, num_workers: int | None) -> tuple[int, float]:
    """(worker count, CPUs each worker reserves) for a batch of ``num_envs`` envs.

    ``num_workers`` None -> ``ceil(num_envs * num_cpus_per_env)`` (one process per reserved core), never
    more than ``num_envs``. Each worker reserves ``num_cpus_per_env`` x the largest block's env count, so
    the batch reserves about what one actor per env did (``num_envs * num_cpus_per_env``)."""
    if num_envs < 1:
        raise ValueError(f"num_envs={num_envs} must be >= 1")
    if num_cpus_per_env <= 0:
        raise ValueError(f"env.resources_per_worker.num_cpus={num_cpus_per_env} must be > 0")
    if num_workers is not None and num_workers < 1:
        raise ValueError(f"env.num_workers={num_workers} must be >= 1, or null for one per reserved core")
    wanted = num_workers if num_workers is not None else math.ceil(round(num_envs * num_cpus_per_env, 6))
    count = max(1, min(num_envs, wanted))
    return count, num_cpus_per_env * math.ceil(num_envs / count)


@dataclass
class EnvSlot:
    """What the batch remembers about one env between calls."""

    worker: int  # index into AlfworldEnvs.workers
    game: GameSpec | None = None
    observation: str = ""
    done: bool = True
    info: dict[str, Any] | None = None


class AlfworldEnvs:
    """``num_envs`` ALFWorld games stepped in parallel (gym-vector style) by a few worker processes."""

    def __init__(self, num_envs: int, max_steps: int, num_cpus_per_env: float, step_timeout_s: float,
                 num_workers: int | None = None):
        if step_timeout_s <= 0:
            raise ValueError(f"env.step_timeout_s={step_timeout_s} must be > 0")
        count, cpus_each = worker_layout(num_envs, num_cpus_per_env, num_workers)
        self.num_envs = num_envs
        self.max_steps = max_steps
        self.step_timeout_s = step_timeout_s
        self._actor_cls = ray.remote(EnvWorker).options(num_cpus=cpus_each)
        self._slots = [EnvSlot(worker=i * count // num_envs) for i in range(num_envs)]
        self._blocks = [[i for i, slot in enumerate(self._slots) if slot.worker == w] for w in range(count)]
        self.workers: list[Any] = [self._spawn() for _ in range(count)]  # Ray actor handles (replaced ones too)

    def worker_of(self, env: int) -> Any:
        """The Ray actor handle of the worker that holds env ``env``."""
        return self.workers[self._slots[env].worker]

    def reset(self, games: list[GameSpec]) -> tuple[list[str], list[dict[str, Any]]]:
        """Load ``games[i]`` into env ``i``; returns (observations, infos)."""
        if len(games) != self.num_envs:
            raise ValueError(f"reset got {len(games)} games for {self.num_envs} envs")
        self._wait_started(range(len(self.workers)))
        calls = {w: {i: games[i].path for i in block} for w, block in enumerate(self._blocks)}
        futures = {w: self.workers[w].reset.remote(paths) for w, paths in calls.items()}
        answered = self._answered(list(futures.values()))
        for w, future in futures.items():
            try:
                results = self._result(future, answered)
            except _WORKER_ERRORS as err:
                logger.warning("ALFWorld worker %d failed during reset (%s); retrying on a new worker", w, err)
                results = self._reset_again(w, calls[w])
            for i, result in results.items():
                if isinstance(result, EnvError):
                    raise RuntimeError(f"ALFWorld game {games[i].path} failed to load: {result.message}")
                self._slots[i].game = games[i]
                self._record(self._slots[i], result, worker_failed=False)
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
        calls = {w: {i: commands[i] for i in block if commands[i] is not None} for w, block in enumerate(self._blocks)}
        futures = {w: self.workers[w].step.remote(batch) for w, batch in calls.items() if batch}
        rewards = [0.0] * self.num_envs
        answered = self._answered(list(futures.values()))
        for w, future in futures.items():
            try:
                results = self._result(future, answered)
            except _WORKER_ERRORS as err:
                logger.warning("ALFWorld worker %d failed mid-episode (%s); its %d episodes count as failed",
                               w, err, len(calls[w]))
                self._replace_worker(w)
                results = {i: EnvError(repr(err)) for i in calls[w]}
            for i, result in results.items():
                failed = isinstance(result, EnvError)
                if failed:
                    result = StepResult(WORKER_FAILED_OBSERVATION, reward=0.0, done=True, won=False)
                rewards[i] = result.reward
                self._record(self._slots[i], result, worker_failed=failed)
        return (
            [s.observation for s in self._slots],
            rewards,
            [s.done for s in self._slots],
            [dict(s.info) for s in self._slots],
        )

    def close(self) -> None:
        """Stop every worker; safe to call twice."""
        for worker in self.workers:
            ray.kill(worker, no_restart=True)
        self.workers = []

    def _reset_again(self, w: int, paths: dict[int, str]) -> dict[int, StepResult | EnvError]:
        """A reset's second and last try, on a fresh worker."""
        self._replace_worker(w)
        self._wait_started([w])
        try:
            return ray.get(self.workers[w].reset.remote(paths), timeout=self.step_timeout_s)
        except _WORKER_ERRORS as again:
            raise RuntimeError(f"ALFWorld could not load {sorted(set(paths.values()))} within env.step_timeout_s="
                               f"{self.step_timeout_s:g}s on two workers ({again!r}); raise env.step_timeout_s if "
                               "the machine is overloaded, or remove the game") from again

    def _wait_started(self, workers) -> None:
        """Wait until the workers have started (process, imports): start-up is not part of a call's
        timeout. A worker that died since its last call (e.g. between episodes) is replaced here."""
        for w, ready in [(w, self.workers[w].__ray_ready__.remote()) for w in workers]:
            try:
                ray.get(ready)
            except RayActorError as err:
                logger.warning("ALFWorld worker %d died between calls (%s); replacing it", w, err)
                self._replace_worker(w)
                ray.get(self.workers[w].__ray_ready__.remote())

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

    def _replace_worker(self, w: int) -> None:
        ray.kill(self.workers[w], no_restart=True)
        self.workers[w] = self._spawn()

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
