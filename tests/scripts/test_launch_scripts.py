"""The reference launch scripts compose the intended configs, from any working directory."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import REPO_ROOT


def composed(script: str, tmp_path, *overrides: str, **env_vars: str) -> dict:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "MODEL_PATH": "/models/qwen", **env_vars}
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *overrides, "--cfg", "job"],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return yaml.safe_load(proc.stdout)


@pytest.mark.parametrize("env_name, schedule, batch", [("alfworld", [6, 3, 0], 16), ("search", [5, 3, 0], 128)])
def test_skillzero_scripts_use_the_reference_hyperparameters(tmp_path, env_name, schedule, batch):
    cfg = composed(f"train_{env_name}_skillzero_3b.sh", tmp_path)
    cur = cfg["env"]["curriculum_learning"]
    assert cur["enable"] and cur["max_set_schedule"] == schedule
    assert cur["skill_mapping_file"] == f"skills/{env_name}/skill_mapping.json"
    assert cfg["data"]["train_batch_size"] == batch and cfg["env"]["rollout"]["n"] == 8
    assert cfg["actor_rollout_ref"]["actor"]["optim"]["lr"] == 1e-6
    assert cfg["actor_rollout_ref"]["actor"]["use_kl_loss"] is False
    assert cfg["actor_rollout_ref"]["rollout"]["val_kwargs"]["temperature"] == 0.4
    assert cfg["trainer"]["total_training_steps"] == 180 and cfg["trainer"]["test_freq"] == 10
    assert cfg["actor_rollout_ref"]["model"]["path"] == "/models/qwen"
    assert cfg["trainer"]["device"] == "cuda" and cfg["actor_rollout_ref"]["rollout"]["name"] == "vllm"
    assert (tmp_path / "data").exists()  # task slots were prepared


def test_baselines_and_overrides(tmp_path):
    static = composed("train_alfworld_static_7b.sh", tmp_path, "trainer.total_training_steps=20")
    assert static["env"]["use_skill"] and static["env"]["skill_file"] == "skills/alfworld/all_skills.md"
    assert static["trainer"]["total_training_steps"] == 20
    grpo = composed("train_alfworld_grpo_3b.sh", tmp_path)
    assert not grpo["env"]["use_skill"] and not grpo["env"]["curriculum_learning"]["enable"]


def test_rollout_engine_defaults_to_hf_on_cpu(tmp_path):
    cfg = composed("train_alfworld_grpo_3b.sh", tmp_path, DEVICE="cpu")
    assert cfg["trainer"]["device"] == "cpu" and cfg["actor_rollout_ref"]["rollout"]["name"] == "hf"
    assert composed("train_alfworld_grpo_3b.sh", tmp_path, DEVICE="cpu", ROLLOUT="vllm")[
        "actor_rollout_ref"]["rollout"]["name"] == "vllm"
