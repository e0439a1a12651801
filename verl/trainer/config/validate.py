"""Cross-field checks of the composed config, run before any worker starts.

Hydra already rejects unknown keys and values of the wrong type (see ``schema.py``). This module
checks the rest: choices, ranges, relations between keys and files that must exist. All problems are
reported at once, each naming the key, the value and the fix.
"""

from __future__ import annotations

import difflib
import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from agent_system.environments import env_family
from agent_system.ocr.highlight import ENV_VAR as HIGHLIGHT_ENV_VAR
from agent_system.ocr.highlight import parse_highlights
from verl.trainer.config.schema import PPOTrainerConfig
from verl.workers.zero_advantage import ZERO_AT_ZERO_ADVANTAGE
from verl.utils import lora
from verl.workers.rollout import vllm_problem
from verl.workers.rollout.vllm_rollout import CPU_KV_CACHE_FIX

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
    "env.skill_scope": ("category", "all_files"),
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


def unknown_key_problems(cfg: DictConfig, schema: DictConfig | None = None, prefix: str = "") -> list[str]:
    """Keys added with Hydra's ``+key=value`` that the schema does not know: they would be ignored silently.

    Hydra rejects a plain ``key=value`` for an unknown key (and suggests ``+key=value``); this catches the
    ``+`` form. Fields typed ``Any`` (file lists, URLs, highlight specs) may hold any structure.
    """
    schema = OmegaConf.structured(PPOTrainerConfig) if schema is None else schema
    problems, known = [], [str(k) for k in schema.keys()]  # (`in` is False for the schema's MISSING leaves)
    for key in cfg.keys():
        name = f"{prefix}{key}"
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            problems.append(f"{name}: not a SkillZero config key, so it would be ignored; {hint}remove it "
                            f"(python -m verl.trainer.main_ppo --cfg job lists every key)")
            continue
        node, schema_node = cfg._get_node(key), schema._get_node(key)
        if isinstance(node, DictConfig) and isinstance(schema_node, DictConfig):
            problems += unknown_key_problems(node, schema_node, f"{name}.")
    return problems


def config_problems(cfg: DictConfig) -> list[str]:
    problems: list[str] = unknown_key_problems(cfg)
    if problems:  # the other checks read known keys only
        return problems

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
    if env.resources_per_worker.num_cpus <= 0:
        bad("env.resources_per_worker.num_cpus", "must be > 0 (CPUs Ray reserves per env)")
    if env.num_workers is not None and env.num_workers < 1:
        bad("env.num_workers", "must be >= 1, or null for one env worker per reserved core")
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
    problems += rollout_problems(cfg)
    problems += ocr_problems(cfg)
    problems += lora.config_problems(arr.model, critic_in_use=cfg.algorithm.adv_estimator == "gae")
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


def rollout_problems(cfg: DictConfig) -> list[str]:
    """The rollout engine's keys: the engine must be installed and its sizes consistent."""
    r = cfg.actor_rollout_ref.rollout
    key = "actor_rollout_ref.rollout."
    problems = []
    if r.tensor_model_parallel_size != 1:
        problems.append(f"{key}tensor_model_parallel_size={r.tensor_model_parallel_size}: each rank runs its own "
                        "engine colocated with its FSDP actor, so only 1 is supported; set 1 (ranks scale the "
                        "rollout data-parallel)")
    if not 0 < r.gpu_memory_utilization <= 1:
        problems.append(f"{key}gpu_memory_utilization={r.gpu_memory_utilization}: must lie in (0, 1]")
    if r.kv_cache_memory_gib is not None and r.kv_cache_memory_gib <= 0:
        problems.append(f"{key}kv_cache_memory_gib={r.kv_cache_memory_gib}: must be > 0, or null")
    needed = cfg.data.max_prompt_length + cfg.data.max_response_length
    if r.max_model_len is not None and r.max_model_len < needed:
        problems.append(f"{key}max_model_len={r.max_model_len}: must be >= data.max_prompt_length + "
                        f"data.max_response_length = {needed}, or null")
    if r.name != "vllm":
        return problems
    if problem := vllm_problem():
        problems.append(f"{key}name='vllm': {problem}")
    if cfg.trainer.device == "cpu" and r.kv_cache_memory_gib is None:
        problems.append(f"{key}kv_cache_memory_gib=None: {CPU_KV_CACHE_FIX}")
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
    actor = cfg.actor_rollout_ref.actor
    loss_terms = [term for term, on in (
        (f"entropy_coeff={actor.entropy_coeff}", actor.entropy_coeff != 0), ("use_kl_loss=True", actor.use_kl_loss),
        (f"policy_loss.loss_mode={actor.policy_loss.loss_mode}", actor.policy_loss.loss_mode not in ZERO_AT_ZERO_ADVANTAGE),
    ) if on]
    if actor.skip_zero_advantage and loss_terms:
        inert.append(f"actor_rollout_ref.actor.skip_zero_advantage=True (with {', '.join(loss_terms)} a zero-advantage "
                     f"sample still has a gradient, so every sample runs; set it to False to silence this)")
    if cfg.env.num_workers is not None and env_family(cfg.env.env_name) != "alfworld":
        inert.append(f"env.num_workers={cfg.env.num_workers} (only ALFWorld runs env worker processes; "
                     f"{cfg.env.env_name} envs live in the trainer process)")
    return inert


def warn_inert_settings(cfg: DictConfig) -> None:
    """Say once, at start-up, which settings do nothing here (never ignore a key silently)."""
    if inert := inert_settings(cfg):
        warnings.warn("these settings have no effect in this run:\n  - " + "\n  - ".join(inert), stacklevel=2)


# --------------------------------------------------------------------------- visual mode (ocr.*)
VISUAL_ENVS = ("alfworld", "search")
COMPRESSION_FACTOR_MAX_DEFAULT = 10.0


def ocr_problems(cfg: DictConfig) -> list[str]:
    """Checks of the ``ocr`` section (the visual mode, docs/visual.md)."""
    ocr, problems = cfg.ocr, []

    def bad(key: str, fix: str) -> None:
        problems.append(f"ocr.{key}={_get(ocr, key)!r}: {fix}")

    for key in ("font_size", "min_width", "min_height", "agent_select_compression.compression_reward_every_n_steps"):
        if _get(ocr, key) < 1:
            bad(key, "must be >= 1")
    if ocr.padding < 0:
        bad("padding", "must be >= 0")
    if ocr.max_workers is not None and ocr.max_workers < 1:
        bad("max_workers", "must be >= 1, or null for min(32, CPU count)")
    if ocr.max_width < ocr.min_width:
        bad("max_width", f"must be >= ocr.min_width={ocr.min_width}")
    if ocr.max_height < ocr.min_height:
        bad("max_height", f"must be >= ocr.min_height={ocr.min_height}")
    for key in ("bg_color", "text_color"):
        color = list(_get(ocr, key))
        if len(color) != 3 or not all(0 <= c <= 255 for c in color):
            bad(key, "must be three integers 0-255, e.g. [255,255,255]")
    if ocr.font_path is not None and not Path(ocr.font_path).expanduser().is_file():
        bad("font_path", "must be an existing .ttf file, or null for DejaVu Sans Mono")
    if ocr.agent_select_compression.compression_failure_penalty_coef < 0:
        bad("agent_select_compression.compression_failure_penalty_coef", "must be >= 0 (it is subtracted)")
    configured = OmegaConf.to_container(ocr, resolve=True)["highlight_configs"]
    try:
        parse_highlights(configured)
    except ValueError as err:
        problems.append(str(err))
    if configured is not None and os.environ.get(HIGHLIGHT_ENV_VAR) is not None:
        bad("highlight_configs", f"highlight colours are also set by ${HIGHLIGHT_ENV_VAR}; unset one of them")
    if not ocr.use_ocr:
        return problems
    family = env_family(cfg.env.env_name)
    if family not in VISUAL_ENVS:
        bad("use_ocr", f"the visual mode exists for {' and '.join(VISUAL_ENVS)}, not env.env_name="
            f"{cfg.env.env_name!r}; set ocr.use_ocr=False")
    if cfg.actor_rollout_ref.rollout.name != "hf":
        bad("use_ocr", "images reach the policy through the hf rollout engine only; set "
            "actor_rollout_ref.rollout.name=hf (the vLLM engine does not take images yet)")
    if cfg.algorithm.adv_estimator == "gae":
        bad("use_ocr", "the critic (algorithm.adv_estimator=gae) has no vision tower; use grpo, gigpo, rloo or "
            "reinforce_plus_plus with the visual mode")
    if cfg.actor_rollout_ref.model.use_remove_padding:
        bad("use_ocr", "actor_rollout_ref.model.use_remove_padding=True packs text-only sequences; images and "
            "multimodal RoPE ids need the padded layout: set actor_rollout_ref.model.use_remove_padding=False")
    return problems


def ocr_warnings(cfg: DictConfig) -> list[str]:
    """``ocr.*`` settings changed from their defaults that change nothing in this run."""
    ocr, out = cfg.ocr, []
    defaults = _flat(OmegaConf.to_container(OmegaConf.load(Path(__file__).with_name("ppo_trainer.yaml")).ocr))
    changed = sorted(k for k, v in _flat(OmegaConf.to_container(ocr)).items() if v != defaults.get(k))
    if "ocr.agent_select_compression.compression_factor_max" in changed:
        out.append("ocr.agent_select_compression.compression_factor_max is accepted for compatibility but unused "
                   "(as in the reference): the compression factor is always clamped to [1, 5]")
    idle = {  # key prefix -> why it changes nothing here (None: it matters)
        "ocr.": None if ocr.use_ocr else "ocr.use_ocr=False",
        "ocr.agent_select_compression.compression_": None if compression_on(ocr) else
        "ocr.agent_select_compression.enable=False",
        "ocr.compact_mode.symbol": None if ocr.compact_mode.enable else "ocr.compact_mode.enable=False",
        "ocr.max_workers": None if ocr.use_parallel else "ocr.use_parallel=False",
    }
    reported = {"ocr.use_ocr", "ocr.agent_select_compression.compression_factor_max"}
    for prefix, reason in idle.items():
        keys = [k for k in changed if k.startswith(prefix) and k not in reported]
        if reason is not None and keys:
            out.append(f"{reason}, so these ocr settings change nothing: {', '.join(keys)}")
            reported.update(keys)
    return out


def compression_on(ocr: DictConfig) -> bool:
    return bool(ocr.use_ocr and ocr.agent_select_compression.enable)


def _flat(tree: dict, prefix: str = "ocr.") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def validate_config(cfg: DictConfig) -> None:
    for message in ocr_warnings(cfg):
        warnings.warn(message, UserWarning, stacklevel=2)
    problems = config_problems(cfg)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
