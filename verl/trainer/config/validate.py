"""Cross-field checks of the composed config, run before any worker starts.

Hydra already rejects unknown keys and values of the wrong type (see ``schema.py``). This module
checks the rest: choices, ranges, relations between keys and files that must exist. All problems are
reported at once, each naming the key, the value and the fix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import DictConfig

from verl.utils import lora
from verl.workers.rollout import vllm_problem

CHOICES: dict[str, tuple[str, ...]] = {
    "algorithm.adv_estimator": ("grpo", "gigpo", "gae", "rloo", "reinforce_plus_plus"),
    "algorithm.gigpo.mode": ("mean_norm", "mean_std_norm"),
    "algorithm.kl_penalty": ("kl", "abs", "mse", "low_var_kl"),
    "algorithm.kl_ctrl.type": ("fixed", "adaptive"),
    "actor_rollout_ref.actor.kl_loss_type": ("kl", "abs", "mse", "low_var_kl"),
    "actor_rollout_ref.actor.loss_agg_mode": ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                                              "seq-mean-token-sum-norm"),
    "critic.loss_agg_mode": ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"),
    "actor_rollout_ref.actor.policy_loss.loss_mode": ("vanilla", "gspo"),
    "actor_rollout_ref.actor.strategy": ("fsdp",),
    "actor_rollout_ref.rollout.name": ("hf", "vllm"),
    "trainer.device": ("cpu", "cuda"),
    "trainer.resume_mode": ("auto", "disable", "resume_path"),
    "data.truncation": ("left", "right", "error"),
    "env.alfworld.eval_dataset": ("eval_in_distribution", "eval_out_of_distribution"),
}

POSITIVE_INTS = (
    "data.train_batch_size", "data.val_batch_size", "data.max_prompt_length", "data.max_response_length",
    "actor_rollout_ref.actor.ppo_mini_batch_size", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu",
    "actor_rollout_ref.actor.ppo_epochs", "actor_rollout_ref.rollout.micro_batch_size",
    "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu",
    "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu", "critic.ppo_micro_batch_size_per_gpu",
    "env.max_steps", "env.rollout.n", "trainer.nnodes", "trainer.n_gpus_per_node", "trainer.total_epochs",
)


class ConfigError(ValueError):
    """One or more config problems; the message lists each with its fix."""


def _get(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def config_problems(cfg: DictConfig) -> list[str]:
    problems: list[str] = []

    def bad(key: str, fix: str) -> None:
        problems.append(f"{key}={_get(cfg, key)!r}: {fix}")

    for key, choices in CHOICES.items():
        if _get(cfg, key) not in choices:
            bad(key, f"must be one of {', '.join(choices)}")
    for key in POSITIVE_INTS:
        if _get(cfg, key) < 1:
            bad(key, "must be >= 1")
    arr, trainer, env = cfg.actor_rollout_ref, cfg.trainer, cfg.env
    if env.step_timeout_s <= 0:
        bad("env.step_timeout_s", "must be > 0 seconds")
    if arr.actor.optim.lr <= 0:
        bad("actor_rollout_ref.actor.optim.lr", "must be > 0")
    if not 0 <= arr.actor.optim.lr_warmup_steps_ratio <= 1:
        bad("actor_rollout_ref.actor.optim.lr_warmup_steps_ratio", "must lie in [0, 1]")
    if trainer.total_training_steps is not None and trainer.total_training_steps < 1:
        bad("trainer.total_training_steps", "must be >= 1, or null to use trainer.total_epochs")
    if trainer.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            bad("trainer.device", "no CUDA device is visible; use trainer.device=cpu")
    elif arr.rollout.name == "vllm":
        bad("actor_rollout_ref.rollout.name", "vllm needs trainer.device=cuda; use rollout.name=hf on CPU")
    if arr.rollout.name == "vllm" and (problem := vllm_problem()):
        bad("actor_rollout_ref.rollout.name", problem)
    problems += lora.config_problems(arr.model, critic_in_use=cfg.algorithm.adv_estimator == "gae")
    if cfg.ocr.use_ocr:
        bad("ocr.use_ocr", "the visual (AgentOCR) mode is not available in this release; set ocr.use_ocr=False")
    if env.use_skill:
        if not env.skill_file or not Path(env.skill_file).expanduser().is_file():
            bad("env.skill_file", "env.use_skill=True needs an existing skill file, e.g. "
                "env.skill_file=skills/alfworld/all_skills.md")
        if env.curriculum_learning.enable:
            bad("env.use_skill", "the static skill baseline and the curriculum exclude each other; "
                "set env.use_skill=False or env.curriculum_learning.enable=False")
    cur = env.curriculum_learning
    if cur.enable:
        mapping = cur.skill_mapping_file
        if not mapping or not Path(mapping).expanduser().is_file():
            bad("env.curriculum_learning.skill_mapping_file",
                "the curriculum needs an existing skill_mapping.json, e.g. skills/alfworld/skill_mapping.json")
        if trainer.test_freq < 1:
            bad("trainer.test_freq", "the curriculum measures skills at every validation; set trainer.test_freq >= 1")
        if not cur.max_set_schedule or any(m < 0 for m in cur.max_set_schedule):
            bad("env.curriculum_learning.max_set_schedule", "must be a non-empty list of budgets >= 0, e.g. [6,3,0]")
    return problems


OFFLOAD_KEYS = (
    "actor_rollout_ref.actor.fsdp_config.param_offload", "actor_rollout_ref.actor.fsdp_config.optimizer_offload",
    "actor_rollout_ref.ref.fsdp_config.param_offload", "critic.model.fsdp_config.param_offload",
    "critic.model.fsdp_config.optimizer_offload",
)


def inert_settings(cfg: DictConfig) -> list[str]:
    """Keys set to a value that has no effect in this run (accepted, so reference scripts run unchanged)."""
    inert = []
    if cfg.trainer.device == "cpu":
        inert += [f"{key}=True (offload moves state from GPU to host memory; on CPU it already is there)"
                  for key in OFFLOAD_KEYS if _get(cfg, key)]
    for key in ("actor_rollout_ref.model.use_remove_padding", "critic.model.use_remove_padding"):
        if _get(cfg, key):
            inert.append(f"{key}=True (the hf path trims left padding per micro-batch instead of packing)")
    return inert


def warn_inert_settings(cfg: DictConfig) -> None:
    """Say once, at start-up, which settings do nothing here (never ignore a key silently)."""
    if inert := inert_settings(cfg):
        warnings.warn("these settings have no effect in this run:\n  - " + "\n  - ".join(inert), stacklevel=2)


def validate_config(cfg: DictConfig) -> None:
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
