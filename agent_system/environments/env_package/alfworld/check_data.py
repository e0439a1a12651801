"""Replay every game's expert ``walkthrough`` through the trainer's own ALFWorld stack.

    python -m agent_system.environments.env_package.alfworld.check_data --split valid_seen [--limit N] [--num_envs K]

Each walkthrough command is sent as model text ``<think>…</think><action>cmd</action>`` through the
same manager, Ray workers and projection the trainer uses, ``K`` games at a time. Prints one JSON
line ``{"split", "games", "won", "per_task_type": {type: {"games", "won"}}, "failed", "seconds"}``
and exits with code 1 when any game is not won. ``--limit N`` replays N games spread evenly over
the sorted game list (so every task type is covered), not the first N.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Sequence

from omegaconf import OmegaConf

from agent_system.environments.alfworld_manager import build_manager
from agent_system.environments.env_package.alfworld.games import (
    SPLIT_FOLDERS,
    GameSpec,
    data_root,
    list_games,
    load_game_json,
)
from verl.utils.ray_utils import init_ray

REPLAY_THOUGHT = "Replaying the expert walkthrough."


def evenly_spaced(games: Sequence[GameSpec], limit: int | None) -> list[GameSpec]:
    """``limit`` games spread evenly over ``games`` (all of them when limit is None or too large)."""
    if limit is None or limit >= len(games):
        return list(games)
    if limit < 1:
        raise ValueError(f"--limit {limit} must be >= 1")
    return [games[i * len(games) // limit] for i in range(limit)]


def walkthrough_of(game: GameSpec) -> list[str]:
    steps = load_game_json(game.path).get("walkthrough")
    if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
        raise ValueError(f"ALFWorld game {game.path} has no 'walkthrough' command list to replay")
    return steps


def replay(games: Sequence[GameSpec], env_cfg: Any, num_envs: int) -> dict[str, Any]:
    """Play the walkthroughs of ``games`` ``num_envs`` at a time; returns the JSON summary."""
    num_envs = min(num_envs, len(games))
    manager = build_manager(env_cfg, games, num_envs)
    won_by_game: dict[str, bool] = {}
    try:
        for start in range(0, len(games), num_envs):
            seeds = list(range(start, min(start + num_envs, len(games))))
            padded = seeds + [seeds[-1]] * (num_envs - len(seeds))  # the last batch may be short
            won = _replay_batch(manager, padded)
            won_by_game.update({games[s].path: won[j] for j, s in enumerate(seeds)})
    finally:
        manager.close()
    per_type: dict[str, dict[str, int]] = {}
    for game in games:
        counts = per_type.setdefault(game.task_type, {"games": 0, "won": 0})
        counts["games"] += 1
        counts["won"] += int(won_by_game[game.path])
    return {
        "games": len(games),
        "won": sum(won_by_game.values()),
        "per_task_type": dict(sorted(per_type.items())),
        "failed": [path for path, won in won_by_game.items() if not won],
    }


def _replay_batch(manager: Any, seeds: list[int]) -> list[bool]:
    plans = [walkthrough_of(manager.game_for_seed(s)) for s in seeds]
    _, infos = manager.reset([{"seed": s} for s in seeds])
    done = [False] * len(seeds)
    for t in range(max(len(p) for p in plans)):
        if all(d or t >= len(p) for d, p in zip(done, plans)):
            break
        # an env whose walkthrough ran out without a win idles on 'look' until the others finish
        commands = [plan[t] if t < len(plan) else "look" for plan in plans]
        texts = [None if d else f"<think>{REPLAY_THOUGHT}</think><action>{c}</action>" for d, c in zip(done, commands)]
        _, _, dones, infos = manager.step(texts)
        done = [bool(d) for d in dones]
    return [bool(info["won"]) for info in infos]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay ALFWorld expert walkthroughs through the training env stack.")
    parser.add_argument("--split", required=True, choices=SPLIT_FOLDERS, help="data folder under json_2.1.1/")
    parser.add_argument("--limit", type=int, default=None, help="replay N games spread over the split (default: all)")
    parser.add_argument("--num_envs", type=int, default=8, help="games played in parallel (one Ray actor each)")
    parser.add_argument("--data_path", default=None, help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA)")
    parser.add_argument("--max_steps", type=int, default=50, help="env.max_steps of each episode")
    parser.add_argument("--num_cpus_per_worker", type=float, default=0.1, help="env.resources_per_worker.num_cpus")
    parser.add_argument("--step_timeout_s", type=float, default=120.0, help="env.step_timeout_s")
    args = parser.parse_args(argv)

    env_cfg = OmegaConf.create(
        {
            "max_steps": args.max_steps,
            "history_length": 2,
            "resources_per_worker": {"num_cpus": args.num_cpus_per_worker},
            "step_timeout_s": args.step_timeout_s,
        }
    )
    games = evenly_spaced(list_games(data_root(args.data_path), args.split), args.limit)
    init_ray(log_to_driver=False)
    started = time.perf_counter()
    summary = {"split": args.split, **replay(games, env_cfg, args.num_envs)}
    summary["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary))
    return 0 if summary["won"] == summary["games"] else 1


if __name__ == "__main__":
    sys.exit(main())
