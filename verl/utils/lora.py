"""LoRA adapters on the policy (Hu et al., 2021, "LoRA: Low-Rank Adaptation of Large Language Models",
arXiv 2106.09685), built with ``peft``.

Each targeted linear layer ``y = W x`` becomes ``y = W x + (alpha / r) · B A x`` with ``A`` (r × in) and
``B`` (out × r) trainable and ``W`` frozen; ``B`` starts at zero, so the wrapped model starts as the base
model. Keys (verl's spelling, under ``actor_rollout_ref.model``): ``lora_rank`` (r; 0 = LoRA off),
``lora_alpha``, ``target_modules`` (``all-linear`` = every linear layer but the output head, or a list of
module names / suffixes) and ``exclude_modules`` (names or a regex kept out). Adapter dropout is 0, so the
trained forward equals the merged model ``W + (alpha / r) · B A`` exactly (up to float rounding) — the
weights the rollout engine samples from (:func:`merged_stream`).

With LoRA the trainer wraps the model *before* FSDP2 sharding, gives the optimizer the adapter
parameters only, computes the reference policy with the adapters switched off
(``PeftModel.disable_adapter()``, no second copy), streams merged weights under the base model's Hugging
Face names into the rollout engine, and checkpoints only the adapter and its optimizer state.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer

KEY = "actor_rollout_ref.model"
ADAPTER = "default"  # peft's name for the one adapter
PEFT_PREFIX = "base_model.model."  # PeftModel -> LoraModel -> the Hugging Face model
SUBDIR = "lora"  # <checkpoint>/actor/lora/adapter_config.json (peft's format, names the base model)


def lora_enabled(model_cfg: Any) -> bool:
    return model_cfg.lora_rank > 0


def _names(value: Any) -> str | list[str] | None:
    """``all-linear``, a regex string, or a list of module names (OmegaConf lists become Python lists)."""
    if value is None or isinstance(value, str):
        return value
    return [str(v) for v in value]


def lora_config(model_cfg: Any, base_model_path: str | None = None) -> LoraConfig:
    return LoraConfig(r=model_cfg.lora_rank, lora_alpha=model_cfg.lora_alpha,
                      target_modules=_names(model_cfg.target_modules), exclude_modules=_names(model_cfg.exclude_modules),
                      lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", base_model_name_or_path=base_model_path)


def config_problems(model_cfg: Any, critic_in_use: bool) -> list[str]:
    """Range and relation checks of the LoRA keys (no model needed); :func:`wrap` checks the model."""
    problems = []
    if model_cfg.lora_rank < 0:
        problems.append(f"{KEY}.lora_rank={model_cfg.lora_rank}: must be >= 0 (0 = LoRA off, e.g. 16 or 32)")
    if not lora_enabled(model_cfg):
        return problems
    if model_cfg.lora_alpha <= 0:
        problems.append(f"{KEY}.lora_alpha={model_cfg.lora_alpha}: must be > 0 (the update is scaled by alpha/rank)")
    targets = _names(model_cfg.target_modules)
    if not targets or (isinstance(targets, list) and not all(targets)):
        problems.append(f"{KEY}.target_modules={targets!r}: use all-linear or a list of module names, "
                        "e.g. [q_proj,k_proj,v_proj,o_proj]")
    if critic_in_use:
        problems.append(f"{KEY}.lora_rank={model_cfg.lora_rank}: LoRA trains the actor only, but "
                        "algorithm.adv_estimator=gae trains a full critic too; use grpo/gigpo/rloo/"
                        "reinforce_plus_plus with LoRA, or set lora_rank=0")
    return problems


def wrap(model: torch.nn.Module, model_cfg: Any, base_model_path: str | None = None) -> PeftModel:
    """``model`` with LoRA adapters (base frozen, adapters trainable). A model or ``target_modules`` that peft
    cannot use is a ``ValueError`` naming the keys. Works on a meta-device model (no memory)."""
    targets = _names(model_cfg.target_modules)
    try:
        wrapped = get_peft_model(model, lora_config(model_cfg, base_model_path))
    except (ValueError, TypeError, NotImplementedError, KeyError) as err:
        raise ValueError(
            f"{KEY}.target_modules={targets!r} (exclude_modules={_names(model_cfg.exclude_modules)!r}): peft cannot "
            f"add LoRA adapters to {type(model).__name__}: {err}. Fix: name linear layers of this model in "
            f"{KEY}.target_modules (all-linear, or e.g. [q_proj,v_proj]), or set {KEY}.lora_rank=0"
        ) from err
    if unsupported := sorted({type(m).__name__ for m in wrapped.modules()
                              if isinstance(m, LoraLayer) and not isinstance(m, LoraLinear)}):
        raise ValueError(f"{KEY}.target_modules={targets!r} selects {', '.join(unsupported)} layers; SkillZero "
                         "merges LoRA into linear layers only. Fix: list linear layers (e.g. all-linear)")
    names = {name for name, _ in wrapped.named_parameters()}  # a tied (shared) weight appears once, elsewhere
    if tied := sorted(n for n, m in wrapped.named_modules() if isinstance(m, LoraLinear)
                      and f"{n}.base_layer.weight" not in names):
        raise ValueError(f"{KEY}.target_modules={targets!r} selects {tied[0].removeprefix(PEFT_PREFIX)}, whose weight is "
                         "tied to another parameter (tie_word_embeddings): its merged weight would change both. "
                         f"Fix: leave it out of {KEY}.target_modules (all-linear already does)")
    if not any(p.requires_grad for p in wrapped.parameters()):
        raise ValueError(f"{KEY}.target_modules={targets!r} matched no layer of {type(model).__name__} once "
                         f"exclude_modules={_names(model_cfg.exclude_modules)!r} was applied; name at least one "
                         "linear layer")
    return wrapped


def seeded_wrapper(model_cfg: Any, seed: int, base_model_path: str) -> Callable[[torch.nn.Module], PeftModel]:
    """:func:`wrap` with the adapters' random init (``A``) drawn from ``seed``, leaving the global RNG as is."""
    def apply(model: torch.nn.Module) -> PeftModel:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return wrap(model, model_cfg, base_model_path)
    return apply


def base_name(peft_name: str) -> str:
    """The Hugging Face name of a wrapped parameter: ``base_model.model.X.q_proj.base_layer.weight`` ->
    ``X.q_proj.weight`` (what the rollout engine's plain model calls it)."""
    return peft_name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")


def is_adapter_param(peft_name: str) -> bool:
    return ".lora_A." in peft_name or ".lora_B." in peft_name


_BASE_WEIGHT = re.compile(r"^(.*)\.base_layer\.weight$")


def merged_stream(module: PeftModel, full_tensor: Callable[[torch.Tensor, torch.dtype], torch.Tensor],
                  dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """``(Hugging Face name, merged full tensor in dtype)`` per base parameter, one at a time.

    A LoRA layer's weight arrives as ``W + (alpha / r) · B A``, merged in fp32 from the gathered ``W``, ``A``
    and ``B`` (the adapters are small) and cast once; every other parameter as is. Adapter parameters
    themselves are never sent, so an engine holding the plain base architecture needs no LoRA support.
    ``full_tensor(param, dtype)`` all-gathers one (sharded) parameter; every rank must consume the stream.
    """
    for name, param in module.named_parameters():
        if is_adapter_param(name):
            continue
        match = _BASE_WEIGHT.match(name)
        if match is None:
            yield base_name(name), full_tensor(param, dtype)
            continue
        layer = module.get_submodule(match.group(1))
        a = full_tensor(layer.lora_A[ADAPTER].weight, torch.float32)
        b = full_tensor(layer.lora_B[ADAPTER].weight, torch.float32)
        merged = full_tensor(param, torch.float32) + (b @ a) * layer.scaling[ADAPTER]
        yield base_name(name), merged.to(dtype)


def check_model(model_cfg: Any, model_path: str, trust_remote_code: bool) -> None:
    """At start-up, before any worker: wrap a meta-device instance of the model (no weights, no memory), so a
    ``target_modules`` that matches nothing or a model peft cannot wrap stops the run naming the key."""
    if not lora_enabled(model_cfg):
        return
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    if getattr(config, "vision_config", None) is not None:
        raise ValueError(f"{KEY}.lora_rank={model_cfg.lora_rank}: LoRA on a vision-language policy ({model_path}) is "
                         f"not supported in this release; set {KEY}.lora_rank=0")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    wrap(model, model_cfg, model_path)


def check_checkpoint(actor_dir: Any, model_cfg: Any) -> None:
    """A resume must use the LoRA setting (on/off, rank, alpha) of the run that wrote the checkpoint."""
    from pathlib import Path

    folder = Path(actor_dir) / SUBDIR
    saved = (folder / "adapter_config.json").exists()
    fix = f"resume with the run's own {KEY}.lora_* keys, or start afresh with trainer.resume_mode=disable"
    if saved != lora_enabled(model_cfg):
        written, now = ("with", "off") if saved else ("without", "on")
        raise ValueError(f"{actor_dir} was written {written} LoRA but {KEY}.lora_rank turns it {now}; {fix}")
    if saved:
        old, new = LoraConfig.from_pretrained(str(folder)), lora_config(model_cfg)
        for key in ("r", "lora_alpha"):  # peft stores all-linear expanded to module names: not compared
            if getattr(old, key) != getattr(new, key):
                raise ValueError(f"{actor_dir} holds LoRA adapters with {key}={getattr(old, key)!r}, this run asks "
                                 f"for {getattr(new, key)!r}; {fix}")
