"""Shared fixtures of the ALFWorld tests: the unpacked game data and env configs (Ray: tests/conftest.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import ray
from omegaconf import DictConfig, OmegaConf
from ray.exceptions import RayActorError

from agent_system.environments.env_package.alfworld.games import GameSpec, list_games, unpack_shared_data


@pytest.fixture(scope="session")
def alfworld_root() -> Path:
    """The bundled games, unpacked once into the SkillZero cache (reused by later runs)."""
    return unpack_shared_data()


@pytest.fixture(scope="session")
def valid_seen_games(alfworld_root: Path) -> list[GameSpec]:
    return list_games(alfworld_root, "valid_seen")


@pytest.fixture(scope="session")
def small_alfworld_root(tmp_path_factory, valid_seen_games: list[GameSpec]) -> Path:
    """A synthetic data folder with short splits: ``valid_seen`` and ``train`` hold 6 valid_seen games (the
    first of each task type) and ``valid_unseen`` (absent from the bundled data) holds 3 of them."""
    first_of_type: dict[str, GameSpec] = {}
    for game in valid_seen_games:
        first_of_type.setdefault(game.task_type, game)
    picked = list(first_of_type.values())
    root = tmp_path_factory.mktemp("alfworld_small")
    for split, games in (("valid_seen", picked), ("train", picked), ("valid_unseen", picked[:3])):
        for game in games:
            copy_game(game, root / "json_2.1.1" / split)
    return root


def kill_worker(worker) -> None:
    """``ray.kill`` an actor and wait until Ray reports it dead (the kill itself is asynchronous)."""
    ray.kill(worker)
    while True:
        try:
            ray.get(worker.__ray_ready__.remote())
        except RayActorError:
            return
        time.sleep(0.05)


def env_config(data_path: Path, **overrides) -> DictConfig:
    """The ``env`` config section as the trainer passes it (defaults of ``ppo_trainer.yaml``)."""
    cfg = OmegaConf.create(
        {
            "env_name": "alfworld/AlfredTWEnv",
            "seed": 0,
            "max_steps": 50,
            "history_length": 2,
            "rollout": {"n": 1},
            "resources_per_worker": {"num_cpus": 0.1},
            "alfworld": {"eval_dataset": "eval_in_distribution", "data_path": str(data_path)},
        }
    )
    return OmegaConf.merge(cfg, OmegaConf.create(overrides))


def copy_game(game: GameSpec, split_dir: Path, folder_name: str | None = None) -> Path:
    """Copy one game's trial folder into ``split_dir`` (optionally under another game-folder name)."""
    trial = Path(game.path).parent
    target = split_dir / (folder_name or trial.parent.name) / trial.name
    shutil.copytree(trial, target)
    return target / "game.tw-pddl"
