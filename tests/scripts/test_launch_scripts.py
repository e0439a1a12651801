"""The launch scripts compose the reference hyperparameters (issue 8's table) and, for the visual runs, the
reference's visual settings (issue 11), from any working directory."""

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
ALFWORLD_VISUAL = row(50, 50, 3072, 256, 8, 32, 128, 0.1, steps=180, **{
    "data.train_batch_size": 16, "actor_rollout_ref.rollout.max_model_len": 4096})
SEARCH_TEXT = row(4, 4, 14000, 256, 8, 32, 512, 0.01, steps=150, test_freq=150, **{"data.train_batch_size": 128})
SEARCH_VISUAL = row(4, 4, 4096, 512, 16, 64, 512, 0.01, steps=180, **{
    "data.train_batch_size": 128, "ray_init.num_cpus": 8})
# SkillZero with a text history has no reference script: the text row with SkillZero's length and test_freq.
CURRICULUM_LENGTH = {"trainer.total_training_steps": 180, "trainer.test_freq": 10}

# Issue 11: the reference's visual settings per environment (render workers, font size, width), compression
# on with reward 0.01 x ln(c) every 8 steps.
OCR_REFERENCE = {"alfworld": (32, 10, 392), "search": (64, 12, 560)}


def ocr(env_name: str, visual: bool) -> dict:
    if not visual:
        return {"ocr.use_ocr": False, "ocr.agent_select_compression.enable": False}
    workers, font, width = OCR_REFERENCE[env_name]
    return {"ocr.use_ocr": True, "ocr.use_parallel": True, "ocr.max_workers": workers, "ocr.font_size": font,
            "ocr.max_width": width, "ocr.agent_select_compression.enable": True,
            "ocr.agent_select_compression.compression_reward_coef": 0.01,
            "ocr.agent_select_compression.compression_reward_every_n_steps": 8}


def skills(env_name: str, method: str) -> dict:
    if method == "skillzero":
        return {"env.curriculum_learning.enable": True, "env.use_skill": False,
                "env.curriculum_learning.max_set_schedule": [6, 3, 0] if env_name == "alfworld" else [5, 3, 0],
                "env.curriculum_learning.skill_mapping_file": f"skills/{env_name}/skill_mapping.json"}
    if method == "static":
        return {"env.use_skill": True, "env.skill_file": f"skills/{env_name}/all_skills.md",
                "env.curriculum_learning.enable": False}
    return {"env.use_skill": False, "env.curriculum_learning.enable": False}


# script run name -> (skills, visual, overrides of the row): the visual runs take the visual row, the text runs
# the text row.
RUNS = {
    "grpo": ("grpo", False, {}),
    "static": ("static", False, {}),
    "skillzero": ("skillzero", True, {}),  # SKILL0 as published
    "agentocr": ("grpo", True, {}),  # the AgentOCR baseline: visual, no skills
    "skillzero_text": ("skillzero", False, CURRICULUM_LENGTH),
}

TABLE = {
    f"train_{env_name}_{run}_{size}.sh": {
        **COMMON, **(visual_row if visual else text_row), **extra, **skills(env_name, method),
        **ocr(env_name, visual), "env.env_name": "alfworld/AlfredTWEnv" if env_name == "alfworld" else "search",
    }
    for env_name, text_row, visual_row in [("alfworld", ALFWORLD_TEXT, ALFWORLD_VISUAL),
                                           ("search", SEARCH_TEXT, SEARCH_VISUAL)]
    for run, (method, visual, extra) in RUNS.items()
    for size in ("3b", "7b")
}


def script_env(tmp_path, model: str | None = MODEL, **extra: str) -> dict[str, str]:
    """The script's environment; ``model=None`` leaves MODEL_PATH unset (the script's default model)."""
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DEVICE": "cpu", **extra}
    env.pop("MODEL_PATH", None)
    return env if model is None else {**env, "MODEL_PATH": model}


def dry_run_overrides(script: str, tmp_path, *overrides: str, model: str | None = MODEL, **env: str) -> list[str]:
    """The Hydra overrides the script passes to the trainer (DRY_RUN=1 prints the command)."""
    proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / script), *overrides], capture_output=True, text=True,
                          cwd=tmp_path, env=script_env(tmp_path, model, DRY_RUN="1", **env), timeout=60)
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


@pytest.mark.parametrize("script", sorted(TABLE))
def test_default_model_is_qwen25_vl_for_visual_runs(script, tmp_path):
    """Visual runs default to Qwen2.5-VL-{3B,7B}-Instruct, text runs to Qwen2.5-{3B,7B}-Instruct."""
    size = script.removesuffix(".sh").rsplit("_", 1)[1].upper()
    family = "Qwen2.5-VL" if TABLE[script]["ocr.use_ocr"] else "Qwen2.5"
    argv = dry_run_overrides(script, tmp_path, model=None)
    assert f"actor_rollout_ref.model.path=Qwen/{family}-{size}-Instruct" in argv


@pytest.mark.parametrize("script, env, engine", [
    ("train_alfworld_grpo_3b.sh", {"DEVICE": "cuda"}, "vllm"),  # a text history on CUDA: vLLM
    ("train_search_skillzero_text_7b.sh", {"DEVICE": "cuda"}, "vllm"),
    ("train_alfworld_skillzero_3b.sh", {"DEVICE": "cuda"}, "hf"),  # visual: images reach the policy through hf
    ("train_search_agentocr_7b.sh", {"DEVICE": "cuda"}, "hf"),
    ("train_alfworld_grpo_3b.sh", {"DEVICE": "cpu"}, "hf"),
    ("train_alfworld_grpo_3b.sh", {"DEVICE": "cpu", "ROLLOUT": "vllm"}, "vllm"),  # ROLLOUT wins
    ("train_search_grpo_3b.sh", {"DEVICE": "cuda", "ROLLOUT": "hf"}, "hf"),
])
def test_rollout_engine_defaults_to_vllm_for_text_runs_on_cuda(script, env, engine, tmp_path):
    argv = dry_run_overrides(script, tmp_path, **env)
    assert f"actor_rollout_ref.rollout.name={engine}" in argv and f"trainer.device={env['DEVICE']}" in argv
