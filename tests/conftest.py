"""Session-wide fixtures: tiny models, a Ray cluster, task-slot files and composed trainer configs.

Everything is built locally and offline; the shared test data is found through SKILLZERO_SHARED_DATA
(default ``<repo>/../shared/data``).
"""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: tests never reach the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
import subprocess
import sys
from pathlib import Path

import pytest
import ray
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

# Fixtures shared across test folders (pytest finds fixtures imported into a conftest).
from tests.agent_system.environments.alfworld_fixtures import (  # noqa: E402,F401
    alfworld_root,
    small_alfworld_root,
    valid_seen_games,
)
from tests.examples.retrieval_fixtures import bm25_index, dense_index  # noqa: E402,F401

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "verl" / "trainer" / "config"



def gpu_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    from verl.utils.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2"))


@pytest.fixture(scope="session")
def tiny_vl_model_dir(tmp_path_factory) -> str:
    """A tiny random Qwen2.5-VL (``python -m verl.utils.tiny_model DIR --vision``)."""
    from verl.utils.tiny_model import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl", vision=True))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole session (started on first use, stopped at exit)."""
    if not ray.is_initialized():
        ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    yield


@pytest.fixture(scope="session", autouse=True)
def _shutdown_ray_at_exit():
    yield
    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="session")
def echo_slots(tmp_path_factory) -> Path:
    """Task-slot parquet files for the echo toy env, written by the real prepare script."""
    out = tmp_path_factory.mktemp("echo_slots")
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "text",
                    "--env", "echo", "--train_data_size", "64", "--val_data_size", "8", "--local_dir", str(out)],
                   check=True, capture_output=True)
    return out / "text"


def trainer_config(overrides: list[str]) -> DictConfig:
    """The trainer config exactly as ``python -m verl.trainer.main_ppo <overrides>`` composes it."""
    from verl.trainer.config.schema import register_schema

    register_schema()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def echo_overrides(model: str, slots: Path, out_dir: Path, **extra) -> list[str]:
    """A small, fast echo-env run on one CPU rank; ``extra`` keys override (dots as ``__``)."""
    base = {
        "env.env_name": "echo",
        "actor_rollout_ref.model.path": model,
        "data.train_files": str(slots / "train.parquet"),
        "data.val_files": str(slots / "test.parquet"),
        "data.train_batch_size": 4,
        "data.val_batch_size": 8,
        "env.rollout.n": 4,
        "env.max_steps": 1,
        "data.max_prompt_length": 64,
        "data.max_response_length": 4,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 4,
        "actor_rollout_ref.actor.optim.lr": 1e-2,
        "actor_rollout_ref.actor.use_invalid_action_penalty": False,
        "env.echo.words": "[apple]",
        "trainer.total_training_steps": 2,
        "trainer.test_freq": -1,
        "trainer.save_freq": -1,
        "trainer.val_before_train": False,
        "trainer.logger": "[file]",
        "trainer.default_local_dir": str(out_dir),
    }
    base.update({k.replace("__", "."): v for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]
