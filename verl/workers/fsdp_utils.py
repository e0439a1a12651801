"""FSDP2 building blocks shared by the actor, reference and critic roles.

Every role holds a Hugging Face model sharded with ``fully_shard`` (FSDP2, one shard group per decoder
layer plus the root), an AdamW optimizer over the sharded (DTensor) parameters and a warm-up/constant
learning-rate schedule. Checkpoints use ``torch.distributed.checkpoint`` (DCP): each rank writes its
own shards, and ``scripts/model_merger.py`` or a resume with another world size can read them back.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
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
    """Wrap each block (:func:`shard_units`) and then the whole model with FSDP2 over all ranks of the default group.

    ``model`` is built on the meta device (:func:`verl.workers.weight_sync.meta_model`): sharding costs no
    memory, and the shards are then allocated on ``device`` uninitialised, for
    :func:`verl.workers.weight_sync.load_into_shards` to fill. On CUDA the forward/backward compute in bf16
    from fp32 master weights, and gradients are reduced in fp32 (``MixedPrecisionPolicy``); on CPU
    everything stays fp32.
    """
    if any(not p.is_meta for p in model.parameters()):
        raise ValueError("shard_model expects a model built on the meta device (weight_sync.meta_model)")
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
    return model.to_empty(device=device)


def build_optimizer(model: torch.nn.Module, optim_cfg) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (all of them, or only the LoRA adapters: frozen ones get no state)."""
    return torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
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


def optimizer_state_devices(device: torch.device, param_offload: bool, optimizer_offload: bool
                            ) -> tuple[torch.device, torch.device]:
    """(where the optimizer state must be for ``optimizer.step()``, where it rests between updates).

    ``optimizer_offload`` on a GPU keeps Adam's moments in host memory between updates and brings them to
    the GPU for the update (verl's FSDP2 optimizer offload): the GPU then holds them only while the actor
    updates, not during rollouts or log-prob passes. With ``param_offload`` FSDP2's ``CPUOffloadPolicy``
    already steps the optimizer on the CPU, so the state stays there. On CPU both are the CPU (the key is
    inert there; the trainer says so at start-up).
    """
    cpu = torch.device("cpu")
    if device.type == "cpu" or param_offload:
        return cpu, cpu
    return device, (cpu if optimizer_offload else device)


def place_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """Move every per-parameter optimizer state tensor (Adam's moments, DTensor shards included) to
    ``device``; scalar entries (Adam's ``step``) stay where torch keeps them."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.device != device:
                state[key] = value.to(device)


@contextmanager
def optimizer_state_on(optimizer: torch.optim.Optimizer, step_device: torch.device, rest_device: torch.device):
    """Hold the optimizer state on ``step_device`` inside the block and on ``rest_device`` after it."""
    place_optimizer_state(optimizer, step_device)
    try:
        yield
    finally:
        place_optimizer_state(optimizer, rest_device)


def all_reduce_sum(value: float, device: torch.device) -> float:
    t = torch.tensor(float(value), dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t)


def all_reduce_max(value: int, device: torch.device) -> int:
    t = torch.tensor(int(value), dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t)


def _model_and_optim_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                           trainable_only: bool) -> dict:
    """``{"model": ..., "optim": ...}`` state dicts (optimizer left out when None). ``trainable_only`` keeps
    the trainable parameters alone (LoRA: the adapters; the frozen base is read from the model path at every
    start). Filtered by name rather than torch's ``ignore_frozen_params``, which keeps the second name of a
    tied frozen parameter (``lm_head.weight``)."""
    if optimizer is None:
        state = {"model": get_model_state_dict(model)}
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        state = {"model": model_sd, "optim": optim_sd}
    if trainable_only:
        keep = {name for name, p in model.named_parameters() if p.requires_grad}
        state["model"] = {k: v for k, v in state["model"].items() if k in keep}
    return state


def save_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, path: Path,
                 trainable_only: bool = False) -> None:
    """Write model (and optimizer) shards of every rank to ``path`` (a DCP folder)."""
    dcp.save(_model_and_optim_state(model, optimizer, trainable_only), checkpoint_id=str(path))


def load_sharded(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, path: Path,
                 trainable_only: bool = False) -> None:
    state = _model_and_optim_state(model, optimizer, trainable_only)
    dcp.load(state, checkpoint_id=str(path))
    options = StateDictOptions(strict=not trainable_only)
    set_state_dict(model, optimizer if optimizer is not None else (), model_state_dict=state["model"],
                   optim_state_dict=state.get("optim", {}), options=options)


def micro_batch_count(n: int, micro_batch_size: int) -> int:
    return max(1, math.ceil(n / micro_batch_size))
