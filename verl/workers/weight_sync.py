"""Moving weights between a checkpoint, the trainer's FSDP2 shards and full-model copies, in bounded memory.

**Start-up (checkpoint -> shards).** Rank 0 alone reads the Hugging Face checkpoint (:func:`read_on_rank0`);
every rank builds the model on the meta device (no memory), shards it with FSDP2, and receives its shard
of each tensor from rank 0 one tensor at a time (:func:`load_into_shards`, torch's
``set_model_state_dict(..., broadcast_from_rank0=True)``). Host RAM at start-up is one full copy on rank 0
plus one shard per rank, instead of one full copy per rank (and per role).

**Weight sync (shards -> rollout engine).** :func:`stream_full_params` yields ``(name, full tensor)`` for one
parameter at a time: the local shard is cast to the engine dtype, all-gathered, handed to the engine and
dropped before the next one. The extra memory of a sync is therefore one parameter in the engine dtype
(the largest is the embedding, ``vocab x hidden``), not a full fp32 state dict. Every rollout engine
receives its weights this way (:meth:`verl.workers.rollout.base.RolloutEngine.load_weights`), including
the first time: the rollout copy is an empty model filled from the stream, not a second checkpoint read.

Names are the trainer module's parameter names (``named_parameters()``, Hugging Face names); tied
parameters (e.g. ``lm_head.weight`` tied to ``model.embed_tokens.weight``) appear once, under the first name.
A LoRA policy streams merged weights (``W + (alpha/r) B A``) under the same base names
(:func:`stream_policy`), one layer's ``W``, ``A`` and ``B`` gathered at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.tensor import DTensor
from peft import PeftModel
from transformers import PretrainedConfig

from verl.utils import lora

Prepare = Callable[[torch.nn.Module], torch.nn.Module]


@dataclass
class Rank0Checkpoint:
    """A checkpoint read on rank 0 only: its state dict and every buffer (empty on the other ranks)."""

    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)


def read_on_rank0(load: Callable[[], torch.nn.Module]) -> Rank0Checkpoint:
    """``load()`` (a ``from_pretrained``) on rank 0, kept as tensors with the module dropped; empty elsewhere.

    Loading with ``dtype="auto"`` keeps the checkpoint's dtype: :func:`load_into_shards` casts each tensor
    into the fp32 shards as it arrives (exact for bf16/fp16), so rank 0 never holds a full fp32 copy."""
    if dist.get_rank() != 0:
        return Rank0Checkpoint()
    model = load()
    return Rank0Checkpoint(dict(model.state_dict()), {n: b.detach() for n, b in model.named_buffers()})


def meta_model(model_cls, config: PretrainedConfig, dtype: torch.dtype, **kwargs) -> torch.nn.Module:
    """The model's structure without memory (parameters and buffers on the meta device)."""
    with torch.device("meta"):
        return model_cls.from_config(config, dtype=dtype, **kwargs)


def load_into_shards(model: torch.nn.Module, source: Rank0Checkpoint, device: torch.device,
                     param_offload: bool) -> None:
    """Fill an FSDP2-sharded, materialised (``to_empty``) model from rank 0's checkpoint.

    Parameters and persistent buffers go through torch's rank-0 broadcast (one tensor at a time, each rank
    keeping its shard); non-persistent buffers (e.g. rotary ``inv_freq``) are broadcast as well, since
    ``to_empty`` leaves them uninitialised. With ``param_offload`` the shards then move to host memory.
    """
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(model, dict(source.state_dict), options=options)  # torch overwrites the dict it gets
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if dist.get_rank() == 0:
                buf.copy_(source.buffers[name])
            dist.broadcast(buf, src=0)
    if param_offload:  # FSDP2's CPUOffloadPolicy wants sharded parameters in host memory, buffers on the device
        model.to("cpu")
        for buf in model.buffers():
            buf.data = buf.data.to(device)


def _full_tensor(param: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The unsharded value of ``param`` in ``dtype``, cast *before* the all-gather (half the traffic and
    memory for bf16; a cast is element-wise, so the result equals gather-then-cast bit for bit)."""
    if not isinstance(param, DTensor):
        return param.detach().to(dtype)
    mesh = param.device_mesh
    local = param.to_local().detach().to(device=mesh.device_type, dtype=dtype)  # offloaded shards come back
    return DTensor.from_local(local, mesh, param.placements, run_check=False, shape=param.shape,
                              stride=param.stride()).full_tensor()


@torch.no_grad()
def stream_full_params(module: torch.nn.Module, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """``(name, full tensor in dtype)`` per parameter of an FSDP2 module, one all-gather at a time.

    Every rank must consume the whole stream (each item is a collective)."""
    for name, param in module.named_parameters():
        yield name, _full_tensor(param, dtype)


def stream_policy(module: torch.nn.Module, dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """What the rollout engine receives: the parameters as they are (:func:`stream_full_params`) or, for a
    LoRA-wrapped policy, the merged base weights under the base model's names (:func:`lora.merged_stream`),
    so an engine holding the plain architecture samples from base + adapter."""
    if isinstance(module, PeftModel):
        return lora.merged_stream(module, _full_tensor, dtype)
    return stream_full_params(module, dtype)


def empty_copy(model_cls, config: PretrainedConfig, dtype: torch.dtype, device: torch.device,
               buffers_from: torch.nn.Module, **kwargs) -> torch.nn.Module:
    """An unsharded model of ``config`` in ``dtype`` on ``device`` with uninitialised parameters, to be
    filled by a weight sync; buffers are copied from ``buffers_from`` (same architecture)."""
    model = meta_model(model_cls, config, dtype, **kwargs).to_empty(device=device)
    model.tie_weights()  # to_empty re-creates parameters; tied ones must point at one tensor again
    source = dict(buffers_from.named_buffers())
    with torch.no_grad():
        for name, buf in model.named_buffers():
            buf.copy_(source[name])
    return model.eval()
