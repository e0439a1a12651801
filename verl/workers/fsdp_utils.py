"""FSDP2 building blocks shared by the actor, reference and critic roles.

Every role holds a Hugging Face model sharded with ``fully_shard`` (FSDP2, one shard group per decoder
layer plus the root), an AdamW optimizer over the sharded (DTensor) parameters and a warm-up/constant
learning-rate schedule. Checkpoints use ``torch.distributed.checkpoint`` (DCP): each rank writes its
own shards, and ``scripts/model_merger.py`` or a resume with another world size can read them back.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor


def shard_units(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks sharded one by one: the model's ``_no_split_modules`` classes (decoder layers and, for
    Qwen2.5-VL, vision blocks), else every ``*DecoderLayer``."""
    names = set(getattr(model, "_no_split_modules", None) or ())
    units = [m for m in model.modules() if type(m).__name__ in names]
    return units or [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]


def shard_model(model: torch.nn.Module, device: torch.device, param_offload: bool) -> torch.nn.Module:
    """Wrap each block (:func:`shard_units`) and then the whole model with FSDP2 over all ranks."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    kwargs: dict = {"mesh": mesh}
    if device.type == "cuda":
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if param_offload:
            kwargs["offload_policy"] = CPUOffloadPolicy()
    layers = shard_units(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no *DecoderLayer modules to shard; "
                         "use a decoder-only Hugging Face causal LM (Qwen2, Llama, ...)")
    for layer in layers:
        fully_shard(layer, **kwargs)
    fully_shard(model, **kwargs)
    if not (device.type == "cuda" and param_offload):
        model.to(device)
    return model


def build_optimizer(model: torch.nn.Module, optim_cfg) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        model.parameters(),
        lr=optim_cfg.lr,
        betas=tuple(optim_cfg.betas),
        weight_decay=optim_cfg.weight_decay,
    )


def build_lr_scheduler(optimizer: torch.optim.Optimizer, warmup_ratio: float, total_steps: int):
    """Linear warm-up over ``warmup_ratio * total_steps`` optimizer updates, then constant (as verl)."""
    warmup = int(warmup_ratio * total_steps)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clip_grad_norm(model: torch.nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm; returns it (inf/nan when the gradients are not finite)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return float(norm)


def optimizer_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, max_norm: float) -> float:
    """Clip and step; a step with inf/nan gradients is skipped rather than corrupt the weights."""
    grad_norm = clip_grad_norm(model, max_norm)
    if math.isfinite(grad_norm):
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    return grad_norm


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded parameters on every rank (an all-gather), for the rollout engine."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def all_reduce_sum(value: float, device: torch.device) -> float:
    t = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, path: Path) -> None:
    """Write model (and optimizer) shards of every rank to ``path`` (a DCP folder)."""
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
    dcp.save(state, checkpoint_id=str(path))


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, path: Path) -> None:
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=str(path))
        set_state_dict(model, (), model_state_dict=state["model"], optim_state_dict={})
        return
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def micro_batch_count(n: int, micro_batch_size: int) -> int:
    return max(1, math.ceil(n / micro_batch_size))
