"""The launch scripts compose the reference hyperparameters (issue 8's table), from any working directory."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import REPO_ROOT, trainer_config
from verl.trainer.config.validate import config_problems
from verl.trainer.ppo.skill_schedule import build_skill_schedule

MODEL = "/models/qwen"

# Every script: GRPO, group 8, lr 1e-6, no KL, response 512, gpu_memory_utilization 0.5, validation with
# sampling at temperature 0.4, validation before training, test and save every 10 steps.
COMMON = {
    "algorithm.adv_estimator": "grpo", "algorithm.use_kl_in_reward": False, "env.rollout.n": 8,
    "actor_rollout_ref.actor.optim.lr": 1e-6, "actor_rollout_ref.actor.use_kl_loss": False,
    "data.max_response_length": 512, "actor_rollout_ref.rollout.gpu_memory_utilization": 0.5,
    "actor_rollout_ref.rollout.val_kwargs.do_sample": True, "actor_rollout_ref.rollout.val_kwargs.temperature": 0.4,
    "actor_rollout_ref.actor.use_invalid_action_penalty": True, "trainer.val_before_train": True,
    "trainer.test_after_train": True, "trainer.save_freq": 10, "actor_rollout_ref.model.path": MODEL,
}


def row(history: int, max_steps: int, prompt: int, mini: int, micro: int, logp_micro: int, val_batch: int,
        penalty: float, steps: int, test_freq: int = 10, **other) -> dict:
    """One row of the table, as config keys."""
    return {"env.history_length": history, "env.max_steps": max_steps, "data.max_prompt_length": prompt,
            "actor_rollout_ref.actor.ppo_mini_batch_size": mini,
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": micro,
            "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": logp_micro,
            "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": logp_micro,
            "data.val_batch_size": val_batch, "actor_rollout_ref.actor.invalid_action_penalty_coef": penalty,
            "trainer.total_training_steps": steps, "trainer.test_freq": test_freq, **other}


ALFWORLD_TEXT = row(50, 50, 5120, 256, 8, 32, 128, 0.1, steps=150, **{"data.train_batch_size": 16})
ALFWORLD_SKILLZERO = row(50, 50, 3072, 256, 8, 32, 128, 0.1, steps=180, **{
    "data.train_batch_size": 16, "actor_rollout_ref.rollout.max_model_len": 4096})
SEARCH_TEXT = row(4, 4, 14000, 256, 8, 32, 512, 0.01, steps=150, test_freq=150, **{"data.train_batch_size": 128})
SEARCH_SKILLZERO = row(4, 4, 4096, 512, 16, 64, 512, 0.01, steps=180, **{
    "data.train_batch_size": 128, "ray_init.num_cpus": 8})


def skills(env_name: str, method: str) -> dict:
    if method == "skillzero":
        return {"env.curriculum_learning.enable": True, "env.use_skill": False,
                "env.curriculum_learning.max_set_schedule": [6, 3, 0] if env_name == "alfworld" else [5, 3, 0],
                "env.curriculum_learning.skill_mapping_file": f"skills/{env_name}/skill_mapping.json"}
    if method == "static":
        return {"env.use_skill": True, "env.skill_file": f"skills/{env_name}/all_skills.md",
                "env.curriculum_learning.enable": False}
    return {"env.use_skill": False, "env.curriculum_learning.enable": False}


TABLE = {
    f"train_{env_name}_{method}_{size}.sh": {
        **COMMON, **table_row, **skills(env_name, method),
        "env.env_name": "alfworld/AlfredTWEnv" if env_name == "alfworld" else "search",
    }
    for env_name, text_row, skillzero_row in [("alfworld", ALFWORLD_TEXT, ALFWORLD_SKILLZERO),
                                              ("search", SEARCH_TEXT, SEARCH_SKILLZERO)]
    for method, table_row in [("grpo", text_row), ("static", text_row), ("skillzero", skillzero_row)]
    for size in ("3b", "7b")
}


def script_env(tmp_path, **extra: str) -> dict[str, str]:
    return {**os.environ, "DATA_DIR": str(tmp_path / "data"), "MODEL_PATH": MODEL, "DEVICE": "cpu", **extra}


def dry_run_overrides(script: str, tmp_path, *overrides: str) -> list[str]:
    """The Hydra overrides the script passes to the trainer (DRY_RUN=1 prints the command)."""
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *overrides], capture_output=True, text=True,
                          cwd=tmp_path, env=script_env(tmp_path, DRY_RUN="1"), timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    argv = shlex.split(proc.stdout)
    assert argv[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    return argv[3:]


def test_every_script_is_in_the_table():
    assert sorted(TABLE) == sorted(p.name for p in (REPO_ROOT / "scripts").glob("train_*.sh"))


@pytest.mark.parametrize("script", sorted(TABLE))
def test_script_composes_the_reference_hyperparameters(script, tmp_path, monkeypatch):
    cfg = trainer_config(dry_run_overrides(script, tmp_path))
    composed = {key: OmegaConf.select(cfg, key) for key in TABLE[script]}
    composed = {k: list(v) if OmegaConf.is_list(v) else v for k, v in composed.items()}
    assert composed == TABLE[script]
    monkeypatch.chdir(REPO_ROOT)  # the script runs the trainer from the repository root
    assert config_problems(cfg) == []
    build_skill_schedule(cfg, cfg.trainer.total_training_steps)  # the curriculum phases fit the schedule
    assert not (tmp_path / "data").exists()  # a dry run prepares nothing


def test_a_real_launch_prepares_data_and_passes_overrides(tmp_path):
    """Through the real entry point (``--cfg job``): the task slots are written, extra arguments win."""
    overrides = ["trainer.total_training_steps=20", "--cfg", "job"]
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts/train_alfworld_static_7b.sh"), *overrides],
                          capture_output=True, text=True, cwd=tmp_path, env=script_env(tmp_path), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    printed = yaml.safe_load(proc.stdout)
    assert printed["trainer"]["total_training_steps"] == 20
    assert (tmp_path / "data/verl-agent/text/train.parquet").exists()
    dry = trainer_config(dry_run_overrides("train_alfworld_static_7b.sh", tmp_path, "trainer.total_training_steps=20"))
    assert printed == OmegaConf.to_container(dry)
