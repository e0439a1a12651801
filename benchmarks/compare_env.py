"""compare.py's environment section: our ALFWorld env workers vs one Ray actor per env vs the ideal.

All sides play the same games with the same seeded random admissible commands through the trainer's
manager (``AlfworldEnvironmentManager``: projection, memory, prompts), ``episodes`` rounds of
``num_envs`` episodes of up to ``episode_steps`` steps; the resets are timed with the steps:
- ``ours``: the trainer's env backend (``alfworld_manager.build_manager``, configured as the trainer
  configures it);
- ``one_actor_per_env``: :class:`OneActorPerEnv`, the reference's design on our game code — every env a
  Ray actor running a :class:`GameSession` with ``num_cpus`` 0.1, one ``ray.get`` over the actors per
  reset and per step;
- ``ideal``: one env in this process (:class:`InProcessEnvs`: no Ray, no inter-process traffic) playing
  the same games one after another, times the CPU count — what the cores could do if parallelism were
  free.
Every side plays the same timed games (:func:`timed_games`; a game's steps can cost twice another's).
Each backend is built fresh every round and warmed up by one untimed reset + step (worker start-up is
not timed: workers live for the whole training run). ``rss_mb_per_env`` (and ``pss_mb_per_env``) is the
memory of the processes a backend runs on (see :func:`backend_processes`) over ``num_envs``.
``cpu_ms_per_step`` is the CPU time (user + system) of this process and the backend's processes over the
timed window per env step: unlike steps/s it hardly moves when other jobs load the machine, so
``cpu_ratio_vs_one_actor_per_env`` and ``cpu_ratio_vs_ideal`` (the other side's CPU per step over ours)
say how much work each design spends per step.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil
import ray
from omegaconf import OmegaConf

from agent_system.environments.alfworld_manager import AlfworldEnvironmentManager, build_manager
from agent_system.environments.env_package.alfworld import parse_cache, translation_cache
from agent_system.environments.env_package.alfworld.games import (
    DATA_VERSION,
    GameSpec,
    data_root,
    list_games,
    unpack_shared_data,
)
from agent_system.environments.env_package.alfworld.session import GameSession, StepResult
from verl.utils.fs import REPO_ROOT
from env_alfworld import Player, play_episodes
from interleave import add_ratios, check_targets, interleave, summarize

REFERENCE_NUM_CPUS = 0.1  # the reference's env.resources_per_worker.num_cpus
TRAINER_CONFIG = REPO_ROOT / "verl" / "trainer" / "config" / "ppo_trainer.yaml"
TARGETS = {
    "ratio_vs_one_actor_per_env": (">=", 1.5),
    "ratio_vs_ideal": (">=", 0.85),
    "rss_mb_per_env": ("<=", 60.0),
}
RATIOS = {
    "ratio_vs_ideal": ("steps_per_s", "ideal_steps_per_s"),
    "ratio_vs_one_actor_per_env": ("steps_per_s", "one_actor_per_env_steps_per_s"),
    "cpu_ratio_vs_ideal": ("single_env_cpu_ms_per_step", "cpu_ms_per_step"),
    "cpu_ratio_vs_one_actor_per_env": ("one_actor_per_env_cpu_ms_per_step", "cpu_ms_per_step"),
}


def _info(result: StepResult, game: GameSpec) -> dict[str, Any]:
    return {"won": result.won, "admissible_commands": list(result.admissible_commands),
            "gamefile": game.path, "task_type": game.task_type}


class _SessionBatch:
    """The env-batch contract the manager drives (``reset(games)``, ``step(commands)``, ``close()``),
    over per-env sessions; subclasses say how a call reaches the sessions."""

    def __init__(self, num_envs: int, max_steps: int):
        self.num_envs, self.max_steps = num_envs, max_steps
        self._games: list[GameSpec] = []

    def _call(self, method: str, args: dict[int, Any]) -> dict[int, StepResult]:
        raise NotImplementedError

    def reset(self, games: list[GameSpec]) -> tuple[list[str], list[dict[str, Any]]]:
        self._games = list(games)
        results = self._call("reset", {i: game.path for i, game in enumerate(games)})
        observations = [results[i].observation for i in range(self.num_envs)]
        return observations, [_info(results[i], game) for i, game in enumerate(games)]

    def step(self, commands: list[str | None]) -> tuple[list[str], list[float], list[bool], list[dict[str, Any]]]:
        results = self._call("step", {i: command for i, command in enumerate(commands) if command is not None})
        n = self.num_envs  # an env that sat out keeps its last state in the manager: placeholders here
        observations, rewards, dones, infos = [""] * n, [0.0] * n, [True] * n, [{}] * n
        for i, result in results.items():
            observations[i], rewards[i], dones[i] = result.observation, result.reward, result.done
            infos[i] = _info(result, self._games[i])
        return observations, rewards, dones, infos


class OneActorPerEnv(_SessionBatch):
    """The reference's env design: one Ray actor per env, one ``ray.get`` over all of them per call."""

    def __init__(self, num_envs: int, max_steps: int, num_cpus: float = REFERENCE_NUM_CPUS):
        super().__init__(num_envs, max_steps)
        actor = ray.remote(GameSession).options(num_cpus=num_cpus)
        self._actors = [actor.remote(max_steps) for _ in range(num_envs)]

    def _call(self, method: str, args: dict[int, Any]) -> dict[int, StepResult]:
        futures = [getattr(self._actors[i], method).remote(arg) for i, arg in args.items()]
        return dict(zip(args, ray.get(futures)))

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor, no_restart=True)


class InProcessEnvs(_SessionBatch):
    """Sessions in this process, stepped one after another (the ideal's single env). Every backend starts
    with cold translation and parse caches, like the fresh worker processes of the other sides."""

    def __init__(self, num_envs: int, max_steps: int):
        super().__init__(num_envs, max_steps)
        translation_cache.clear()
        parse_cache.clear()
        self._sessions = [GameSession(max_steps) for _ in range(num_envs)]

    def _call(self, method: str, args: dict[int, Any]) -> dict[int, StepResult]:
        return {i: getattr(self._sessions[i], method)(arg) for i, arg in args.items()}

    def close(self) -> None:
        self._sessions = []


def backend_processes() -> list[psutil.Process]:
    """The processes env backends run in: this process's descendants that are Ray actors (``ray::<Class>``
    process titles, idle workers excluded) or that no Ray process title names (e.g. a pool of plain worker
    processes); Ray's own daemons are left out."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            title = " ".join(process.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        if not (title.startswith("ray::IDLE") or (not title.startswith("ray::") and "ray" in title)):
            found.append(process)
    return found


def backend_memory_mb() -> tuple[float, float]:
    """(RSS, PSS) in MiB of the :func:`backend_processes`."""
    rss = pss = 0
    for process in backend_processes():
        try:
            memory = process.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss += memory.rss
        pss += memory.pss
    return rss / 2**20, pss / 2**20


def cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """User + system CPU seconds of each live process, by PID."""
    seconds = {}
    for process in processes:
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        seconds[process.pid] = times.user + times.system
    return seconds


def timed_games(num_envs: int, episodes: int, games: int, seed: int) -> tuple[list[int], list[int]]:
    """(warm-up game indices, timed game indices): every side plays the same ``num_envs x episodes`` timed
    games (the in-process ideal one after another), after a warm-up on other games. Per-step cost differs
    between games by up to 2x, so the sides must not be compared on different ones."""
    timed = [(seed * 1000 + k) % games for k in range(num_envs * episodes)]
    warm_up = [(seed * 1000 - 1 - k) % games for k in range(num_envs)]
    return warm_up, timed


def measure(make_manager, num_envs: int, episodes: int, episode_steps: int, games: int, seed: int,
            prefix: str, memory: bool, timed_envs: int | None = None) -> dict[str, float]:
    """Play the timed games of ``timed_envs`` (default ``num_envs``) envs x ``episodes`` rounds on a
    backend of ``num_envs`` envs (the ideal: 1 env, 16 x episodes rounds)."""
    manager = make_manager(num_envs)
    try:
        player = Player(manager, "random", seed)
        warm_up, timed = timed_games(timed_envs or num_envs, episodes, games, seed)
        play_episodes(player, iter(warm_up[:num_envs]), num_envs, 1, 1)  # every worker has loaded a game
        processes = [psutil.Process(), *backend_processes()]
        cpu_before = cpu_seconds(processes)
        started = time.perf_counter()
        steps, _, _ = play_episodes(player, iter(timed), num_envs, len(timed) // num_envs, episode_steps)
        values = {f"{prefix}steps_per_s": steps / (time.perf_counter() - started)}
        cpu_after = cpu_seconds(processes)
        cpu = sum(cpu_after[pid] - cpu_before[pid] for pid in cpu_after if pid in cpu_before)
        values[f"{prefix}cpu_ms_per_step"] = 1000 * cpu / steps
        if memory:
            rss, pss = backend_memory_mb()
            values.update({f"{prefix}rss_mb_per_env": rss / num_envs, f"{prefix}pss_mb_per_env": pss / num_envs})
        return values
    finally:
        manager.close()


def run(args) -> dict:
    """The env section: ``args`` carries alfworld_data, split, num_envs, num_workers, episodes, episode_steps,
    reps, seed."""
    root = data_root(args.alfworld_data)
    if not (root / DATA_VERSION).is_dir():  # no ALFWorld download here: the games bundled with the tests
        root = unpack_shared_data()
    games = list_games(root, args.split)
    env_cfg = OmegaConf.load(TRAINER_CONFIG).env  # ours runs with the trainer's default env settings
    env_cfg.max_steps = args.episode_steps
    if args.num_workers is not None:
        env_cfg.num_workers = args.num_workers
    cpus = os.cpu_count() or 1

    def ours(n: int) -> AlfworldEnvironmentManager:
        return build_manager(env_cfg, games, n)

    def reference(n: int) -> AlfworldEnvironmentManager:
        return AlfworldEnvironmentManager(OneActorPerEnv(n, args.episode_steps), games, env_cfg.history_length)

    def in_process(n: int) -> AlfworldEnvironmentManager:
        return AlfworldEnvironmentManager(InProcessEnvs(n, args.episode_steps), games, env_cfg.history_length)

    def ideal() -> dict[str, float]:
        single = measure(in_process, 1, args.episodes, args.episode_steps, len(games), args.seed, "", False,
                         timed_envs=args.num_envs)
        return {"single_env_steps_per_s": single["steps_per_s"], "ideal_steps_per_s": cpus * single["steps_per_s"],
                "single_env_cpu_ms_per_step": single["cpu_ms_per_step"]}

    rounds = interleave([
        lambda: measure(ours, args.num_envs, args.episodes, args.episode_steps, len(games), args.seed, "", True),
        lambda: measure(reference, args.num_envs, args.episodes, args.episode_steps, len(games), args.seed,
                        "one_actor_per_env_", True),
        ideal,
    ], args.reps)
    add_ratios(rounds, RATIOS)
    summary = summarize(rounds, digits=2)
    summary["targets"] = check_targets(summary, TARGETS)
    summary["setup"] = {"num_envs": args.num_envs, "num_workers": env_cfg.num_workers, "episodes": args.episodes,
                        "episode_steps": args.episode_steps, "split": args.split, "games": len(games),
                        "cpus": cpus, "policy": "random admissible command"}
    return summary
