"""The reference launch scripts compose the intended configs, from any working directory."""

from __future__ import annotations

import os
import subprocess

import pytest
import yaml

from tests.conftest import REPO_ROOT


def composed(script: str, tmp_path, *overrides: str) -> dict:
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "MODEL_PATH": "/models/qwen"}
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
    assert (tmp_path / "data").exists()  # task slots were prepared
    assert_reference_visual_run(cfg, env_name)  # SKILL0 as published trains Qwen2.5-VL on rendered history


# The reference's visual settings per environment: (render workers, font size, width).
OCR_REFERENCE = {"alfworld": (32, 10, 392), "search": (64, 12, 560)}


def assert_reference_visual_run(cfg: dict, env_name: str) -> None:
    ocr = cfg["ocr"]
    assert ocr["use_ocr"] and (ocr["max_workers"], ocr["font_size"], ocr["max_width"]) == OCR_REFERENCE[env_name]
    compression = ocr["agent_select_compression"]
    assert compression["enable"] and compression["compression_reward_coef"] == 0.01
    assert compression["compression_reward_every_n_steps"] == 8


def test_agentocr_baseline_and_text_variant(tmp_path):
    agentocr = composed("train_alfworld_agentocr_3b.sh", tmp_path)
    assert_reference_visual_run(agentocr, "alfworld")
    assert not agentocr["env"]["curriculum_learning"]["enable"] and not agentocr["env"]["use_skill"]
    text = composed("train_search_skillzero_text_7b.sh", tmp_path)
    assert not text["ocr"]["use_ocr"] and text["env"]["curriculum_learning"]["max_set_schedule"] == [5, 3, 0]


def test_default_models_are_qwen25_vl_for_visual_runs():
    scripts = REPO_ROOT / "scripts"
    assert "Qwen/Qwen2.5-VL-3B-Instruct" in (scripts / "train_alfworld_skillzero_3b.sh").read_text()
    assert "Qwen/Qwen2.5-VL-7B-Instruct" in (scripts / "train_search_agentocr_7b.sh").read_text()
    assert "Qwen/Qwen2.5-7B-Instruct" in (scripts / "train_search_skillzero_text_7b.sh").read_text()


def test_baselines_and_overrides(tmp_path):
    static = composed("train_alfworld_static_7b.sh", tmp_path, "trainer.total_training_steps=20")
    assert static["env"]["use_skill"] and static["env"]["skill_file"] == "skills/alfworld/all_skills.md"
    assert static["trainer"]["total_training_steps"] == 20
    grpo = composed("train_alfworld_grpo_3b.sh", tmp_path)
    assert not grpo["env"]["use_skill"] and not grpo["env"]["curriculum_learning"]["enable"]
