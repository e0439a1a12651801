"""ALFWorld environment throughput and latency, measured through the trainer's manager.

    python benchmarks/env_alfworld.py [--num_envs 1 2 4 8 16] [--rounds 10] [--policy random|expert]

Prints one JSON object: env steps per second for each batch size (every env gets one model-style
``<think>…</think><action>…</action>`` text per round; finished episodes are reset, and reset time
is not counted), plus the p50 latency in ms of a single env's reset and step. ``random`` plays a
uniformly random admissible command, ``expert`` the game's stored walkthrough. ``compare.py`` reuses
:class:`Player` and :func:`play_episodes` for its resets-included comparison. Needs ALFWorld data
(``$ALFWORLD_DATA`` or ``--data_path``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import time
from collections.abc import Iterator

from omegaconf import OmegaConf

from agent_system.environments.alfworld_manager import AlfworldEnvironmentManager, build_manager
from agent_system.environments.env_package.alfworld.check_data import walkthrough_of
from agent_system.environments.env_package.alfworld.games import data_root, list_games
from verl.utils.ray_utils import init_ray


class Player:
    """Chooses each env's next command: random admissible, or the walkthrough's next step."""

    def __init__(self, manager: AlfworldEnvironmentManager, policy: str, seed: int):
        self.manager, self.policy, self.rng = manager, policy, random.Random(seed)
        self.plans: list[list[str]] = []

    def start(self, seeds: list[int]) -> list[dict]:
        if self.policy == "expert":
            self.plans = [walkthrough_of(self.manager.game_for_seed(s)) for s in seeds]
        return self.manager.reset([{"seed": s} for s in seeds])[1]

    def texts(self, infos: list[dict], step: int) -> list[str]:
        if self.policy == "expert":
            commands = [plan[step] if step < len(plan) else "look" for plan in self.plans]
        else:
            commands = [self.rng.choice(info["admissible_commands"]) for info in infos]
        return [f"<think>benchmark</think><action>{c}</action>" for c in commands]


def play_episodes(player: Player, seeds: Iterator[int], num_envs: int, episodes: int,
                  episode_steps: int) -> tuple[int, float, float]:
    """Play ``episodes`` rounds of ``num_envs`` episodes (reset, then up to ``episode_steps`` parallel
    steps; an env whose episode ended sits out); returns (env steps, seconds stepping, seconds resetting)."""
    steps, stepping, resetting = 0, 0.0, 0.0
    for _ in range(episodes):
        started = time.perf_counter()
        infos = player.start([next(seeds) for _ in range(num_envs)])
        resetting += time.perf_counter() - started
        done = [False] * num_envs
        for step in range(episode_steps):
            texts = [None if finished else text for finished, text in zip(done, player.texts(infos, step))]
            started = time.perf_counter()
            _, _, dones, infos = player.manager.step(texts)
            stepping += time.perf_counter() - started
            steps += sum(text is not None for text in texts)
            done = dones.tolist()
            if all(done):
                break
    return steps, stepping, resetting


def throughput(player: Player, num_envs: int, rounds: int, games: int) -> float:
    """Env steps per second over ``rounds`` rounds of ``num_envs`` parallel steps (resets not timed)."""
    seeds = (seed % games for seed in itertools.count())
    episode_steps = min(rounds, player.manager.envs.max_steps)
    steps, stepping, _ = play_episodes(player, seeds, num_envs, -(-rounds // episode_steps), episode_steps)
    return steps / stepping


def single_env_latency(player: Player, repeats: int, games: int) -> tuple[float, float]:
    """p50 ms of one env's reset and of its steps."""
    resets, steps = [], []
    for seed in range(repeats):
        started = time.perf_counter()
        infos = player.start([seed % games])
        resets.append(time.perf_counter() - started)
        for step in range(3):
            started = time.perf_counter()
            _, _, dones, infos = player.manager.step(player.texts(infos, step))
            steps.append(time.perf_counter() - started)
            if dones[0]:
                break
    return 1000 * statistics.median(resets), 1000 * statistics.median(steps)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_envs", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--rounds", type=int, default=10, help="parallel steps timed per batch size")
    parser.add_argument("--latency_repeats", type=int, default=5, help="single-env resets timed")
    parser.add_argument("--policy", choices=("random", "expert"), default="random")
    parser.add_argument("--split", default="valid_seen", help="data folder under json_2.1.1/")
    parser.add_argument("--data_path", default=None, help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")
    parser.add_argument("--max_steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    games = list_games(data_root(args.data_path), args.split)
    env_cfg = OmegaConf.create(
        {"max_steps": args.max_steps, "history_length": 2, "resources_per_worker": {"num_cpus": 0.1},
         "step_timeout_s": 120.0}
    )
    init_ray(log_to_driver=False)
    result: dict = {"split": args.split, "policy": args.policy, "cpus": os.cpu_count(), "env_steps_per_s": {}}
    for num_envs in args.num_envs:
        manager = build_manager(env_cfg, games, num_envs)
        try:
            rate = throughput(Player(manager, args.policy, args.seed), num_envs, args.rounds, len(games))
            result["env_steps_per_s"][str(num_envs)] = round(rate, 2)
        finally:
            manager.close()
    manager = build_manager(env_cfg, games, 1)
    try:
        player = Player(manager, args.policy, args.seed)
        reset_ms, step_ms = single_env_latency(player, args.latency_repeats, len(games))
    finally:
        manager.close()
    result.update(reset_ms_p50=round(reset_ms, 1), step_ms_p50=round(step_ms, 1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
