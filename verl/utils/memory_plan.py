"""Memory per rank before launch, from the model's ``config.json`` and the trainer config alone.

    python -m verl.utils.memory_plan <the trainer's Hydra overrides> [--json] [--device_memory_gb 80]

The model is built on the meta device (no weights are read) to count its parameters exactly; everything
else is arithmetic on the config. Per rank (``W = trainer.nnodes x trainer.n_gpus_per_node`` ranks, ``P``
policy parameters, ``b`` = 2 bytes for bf16 on CUDA / 4 for fp32 on CPU):

=================  ==========================================================================================
params             actor's FSDP2 shard, fp32 master weights: ``4P/W`` (0 with ``param_offload``: host memory)
gradients          fp32 gradient shards ``4P/W``, held during the update only (freed after it)
optimizer          AdamW moments ``8P/W``; with ``optimizer_offload`` on the device only during the update.
                   With LoRA (``lora_rank > 0``) gradients and moments cover the ``A`` adapter parameters
                   only (``4A/W``, ``8A/W``), params add them (``4(P+A)/W``) and there is no reference copy
rollout            the hf engine's unsharded copy ``P x b`` plus its KV cache for ``rollout.micro_batch_size``
                   prompts of ``prompt + response`` tokens; vLLM: ``gpu_memory_utilization x device``, or
                   ``P x b`` plus ``rollout.kv_cache_memory_gib`` when set, held through every phase
reference          the reference policy's shard ``4P/W`` when a KL term is on (0 with its ``param_offload``)
critic             the value model's shard, gradients and moments ``16 P_critic / W`` for ``gae``
activations        one micro-batch of ``ppo_micro_batch_size_per_gpu x (prompt + response)`` tokens: per
                   decoder layer and token ``b (12h + 4 kv + 4I)`` saved for backward (RMSNorm in/out,
                   q/k/v and their rotary copies, attention output, SwiGLU gate/up/act/product), plus, on
                   CPU, the ``heads x S^2`` fp32 attention weights of the math kernel (GPU kernels are
                   flash/memory-efficient). With gradient checkpointing only each layer's input ``b h`` is
                   kept, plus one layer recomputed in full (Korthikanti et al., 2022, "Reducing Activation
                   Recomputation in Large Transformer Models", section 4).
transient_logits   the micro-batch's response logits ``B (T+1) V``: model-dtype logits, their
                   temperature-scaled copy, float32 working copy and gradient (``3b + 4`` bytes each)
transient_sync     the largest parameter all-gathered in the engine dtype during a weight sync, twice (the
                   all-gather's output and the tensor handed to the engine; measured on CPU)
fsdp_unsharded     during the update FSDP2 keeps the root module's parameters (embeddings, final norm, an
                   untied head) unsharded through forward and backward, and unshards two decoder layers at a
                   time (current + prefetch): those parameters in the compute dtype plus their fp32 gradients
                   before the reduce-scatter, ``(root + 2 layer) x (b + 4)`` bytes
runtime            the process itself: torch, transformers, Ray worker (CPU, measured) or the CUDA context
                   and NCCL buffers (GPU)
=================  ==========================================================================================

Phases do not overlap, so ``total`` is the largest of: generation (static + KV cache), the update
(static + gradients + optimizer + activations + logits + fsdp_unsharded) and the weight sync (static +
transient_sync), where static = params + optimizer-at-rest + rollout copy + reference + critic + runtime. On CPU all ranks of a node
share its RAM, so the check there is ``n_gpus_per_node x total`` against the host memory.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from verl.utils import lora

GIB = 2**30
CPU_RUNTIME_BYTES = int(0.55 * GIB)  # RSS of an idle rank process (torch + transformers + Ray), measured here
CUDA_RUNTIME_BYTES = int(1.0 * GIB)  # CUDA context, NCCL buffers and allocator slack on a Hopper GPU


class MemoryPlanError(RuntimeError):
    """The plan exceeds the device and ``trainer.strict_memory_plan`` is on."""


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs from a decoder-only model: exact parameter counts and the layer geometry."""

    params: int
    largest_param: int
    root_params: int  # outside the sharded blocks: embeddings, final norm, an untied head
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    adapter_params: int = 0  # LoRA adapters (trainable; the base is frozen); 0 = full fine-tuning

    @classmethod
    @classmethod
    def from_config(cls, config: Any, model_cls: Any = None, trust_remote_code: bool = False,
                    lora_cfg: Any = None) -> "ModelShape":
        """Count parameters on a meta-device instance of ``config`` (no memory, no weights). A vision-language
        config (Qwen2.5-VL) counts its vision tower too; the geometry is its language model's. With
        ``lora_cfg`` (``actor_rollout_ref.model`` with ``lora_rank > 0``) also the adapters'."""
        from verl.utils.model import causal_lm_class
        from verl.workers.fsdp_utils import shard_units

        with torch.device("meta"):
            model = (model_cls or causal_lm_class(config)).from_config(config, trust_remote_code=trust_remote_code)
        adapters = 0
        if lora_cfg is not None and lora.lora_enabled(lora_cfg):
            wrapped = lora.wrap(model, lora_cfg)
            adapters = sum(p.numel() for p in wrapped.parameters() if p.requires_grad)
            model = wrapped.get_base_model()
        params = [p for n, p in model.named_parameters() if not lora.is_adapter_param(n)]  # tied ones once
        in_layers = {id(p) for m in shard_units(model) for p in m.parameters()}
        text = config.get_text_config()
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        return cls(params=sum(p.numel() for p in params), largest_param=max(p.numel() for p in params),
                   root_params=sum(p.numel() for p in params if id(p) not in in_layers),
                   hidden=text.hidden_size, layers=text.num_hidden_layers, heads=text.num_attention_heads,
                   kv_heads=getattr(text, "num_key_value_heads", None) or text.num_attention_heads,
                   head_dim=head_dim, intermediate=text.intermediate_size, vocab=text.vocab_size,
                   adapter_params=adapters)


def _activation_bytes(m: ModelShape, batch: int, seq: int, dtype_bytes: int, cpu: bool, checkpointing: bool) -> int:
    kv = m.kv_heads * m.head_dim
    per_token_layer = dtype_bytes * (12 * m.hidden + 4 * kv + 4 * m.intermediate)
    attn_weights = 4 * m.heads * seq * seq * batch if cpu else 0  # math SDPA keeps softmax(QK^T) for backward
    full_layer = batch * seq * per_token_layer + attn_weights
    if checkpointing:
        return m.layers * batch * seq * dtype_bytes * m.hidden + full_layer
    return m.layers * full_layer


def memory_plan(cfg: DictConfig, policy: ModelShape, critic: ModelShape | None = None,
                device_memory: int | None = None) -> dict[str, Any]:
    """The per-rank plan of ``cfg`` (a composed trainer config) as a JSON-ready dict (see module doc)."""
    arr, data = cfg.actor_rollout_ref, cfg.data
    cuda = cfg.trainer.device == "cuda"
    world = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node
    b = 2 if cuda else 4
    p, fsdp = policy.params, arr.actor.fsdp_config

    def on_device(offload: bool) -> bool:  # offload moves state off a GPU; on CPU it is host memory anyway
        return not (cuda and offload)

    seq = data.max_prompt_length + data.max_response_length

    trainable = policy.adapter_params or p  # LoRA: only the adapters have gradients and Adam moments
    params = 4 * (p + policy.adapter_params) // world if on_device(fsdp.param_offload) else 0
    gradients = 4 * trainable // world if on_device(fsdp.param_offload) else 0
    optimizer = 8 * trainable // world if on_device(fsdp.param_offload) else 0
    optimizer_at_rest = optimizer if on_device(fsdp.optimizer_offload) else 0
    if arr.rollout.name == "vllm" and arr.rollout.kv_cache_memory_gib is not None:  # weights + a fixed KV cache
        rollout, kv_cache = p * b + int(arr.rollout.kv_cache_memory_gib * GIB), 0
    elif arr.rollout.name == "vllm" and device_memory:
        rollout, kv_cache = int(arr.rollout.gpu_memory_utilization * device_memory), 0
    else:
        rollout = p * b
        kv_cache = arr.rollout.micro_batch_size * seq * policy.layers * 2 * policy.kv_heads * policy.head_dim * b
    use_ref = (arr.actor.use_kl_loss or cfg.algorithm.use_kl_in_reward) and not policy.adapter_params  # LoRA: base = adapters off
    reference = 4 * p // world if use_ref and on_device(arr.ref.fsdp_config.param_offload) else 0
    critic_bytes = 0
    if critic is not None and cfg.algorithm.adv_estimator == "gae":
        cf = cfg.critic.model.fsdp_config
        critic_bytes = (8 * critic.params // world if on_device(cf.param_offload) else 0) + (
            8 * critic.params // world if on_device(cf.param_offload) and on_device(cf.optimizer_offload) else 0)
    micro = arr.actor.ppo_micro_batch_size_per_gpu
    act = {gc: _activation_bytes(policy, micro, seq, b, not cuda, gc) for gc in (False, True)}
    activations = act[bool(arr.model.enable_gradient_checkpointing)]
    logits = micro * (data.max_response_length + 1) * policy.vocab * (3 * b + 4)
    sync = 2 * policy.largest_param * b
    layer_params = (p - policy.root_params) // policy.layers
    unsharded = (policy.root_params + 2 * layer_params) * (b + 4)
    runtime = CUDA_RUNTIME_BYTES if cuda else CPU_RUNTIME_BYTES

    static = params + optimizer_at_rest + rollout + reference + critic_bytes + runtime
    phases = {"generation": static + kv_cache,
              "update": static + gradients + (optimizer - optimizer_at_rest) + activations + logits + unsharded,
              "weight_sync": static + sync}
    total = max(phases.values())
    per_rank = {"params": params, "gradients": gradients, "optimizer": optimizer, "rollout": rollout,
                "kv_cache": kv_cache, "reference": reference, "critic": critic_bytes,
                "activations_without_checkpointing": act[False], "activations_with_checkpointing": act[True],
                "transient_logits": logits, "transient_sync": sync, "fsdp_unsharded": unsharded, "runtime": runtime}
    plan: dict[str, Any] = {"device": cfg.trainer.device, "world_size": world, "policy": asdict(policy),
                            "per_rank": per_rank, "phases": phases, "total": total,
                            "gradient_checkpointing": bool(arr.model.enable_gradient_checkpointing)}
    if device_memory:
        ranks_sharing = 1 if cuda else cfg.trainer.n_gpus_per_node
        plan.update(device_memory=device_memory, fits=total * ranks_sharing <= device_memory,
                    ranks_sharing_device=ranks_sharing)
    return plan


def render(plan: dict[str, Any]) -> str:
    """The plan as a table in GiB."""
    lines = [f"memory plan per rank ({plan['world_size']} ranks, {plan['device']}, gradient checkpointing "
             f"{'on' if plan['gradient_checkpointing'] else 'off'}):"]
    lines += [f"  {k:<34} {v / GIB:8.2f} GiB" for k, v in plan["per_rank"].items()]
    lines += [f"  phase {k:<28} {v / GIB:8.2f} GiB" for k, v in plan["phases"].items()]
    lines.append(f"  {'total (largest phase)':<34} {plan['total'] / GIB:8.2f} GiB")
    if "device_memory" in plan:
        share = plan["ranks_sharing_device"]
        need = f"{share} ranks x " if share > 1 else ""
        lines.append(f"  device memory {plan['device_memory'] / GIB:.1f} GiB for {need}the total: "
                     f"{'fits' if plan['fits'] else 'DOES NOT FIT'}")
    return "\n".join(lines)


def plan_for_run(cfg: DictConfig, model_path: str, critic_path: str | None,
                 device_memory: int | None = None) -> dict[str, Any]:
    """Read the config.json files of the resolved policy (and critic) folders and plan ``cfg``."""
    from transformers import AutoConfig, AutoModelForTokenClassification

    trust = cfg.actor_rollout_ref.model.trust_remote_code
    policy = ModelShape.from_config(AutoConfig.from_pretrained(model_path, trust_remote_code=trust),
                                    trust_remote_code=trust, lora_cfg=cfg.actor_rollout_ref.model)
    critic = None
    if critic_path is not None and cfg.algorithm.adv_estimator == "gae":
        config = AutoConfig.from_pretrained(critic_path, num_labels=1, trust_remote_code=trust)
        critic = ModelShape.from_config(config, AutoModelForTokenClassification, trust)
    return memory_plan(cfg, policy, critic, device_memory)


def check_plan(plan: dict[str, Any], strict: bool) -> None:
    """Warn, or with ``trainer.strict_memory_plan`` stop, when the plan exceeds the device."""
    if plan.get("fits", True):
        return
    message = (f"the memory plan needs {plan['total'] / GIB:.1f} GiB per rank "
               f"(x{plan['ranks_sharing_device']} ranks sharing) but the device has "
               f"{plan['device_memory'] / GIB:.1f} GiB. Fix: enable actor_rollout_ref.model."
               f"enable_gradient_checkpointing, lower actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu or "
               f"actor_rollout_ref.rollout.micro_batch_size, set fsdp_config.optimizer_offload / param_offload, "
               f"or add ranks (trainer.n_gpus_per_node, trainer.nnodes); see docs/scale.md")
    if strict:
        raise MemoryPlanError(message + " (or set trainer.strict_memory_plan=False to try anyway)")
    import warnings

    warnings.warn(message, stacklevel=2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--device_memory_gb", type=float, default=None,
                        help="memory of one GPU (or of the host on CPU) to check the plan against")
    args, overrides = parser.parse_known_args(argv)
    from verl.trainer.config import compose_config
    from verl.utils.model import resolve_model_path

    cfg = compose_config(overrides)
    device_memory = int(args.device_memory_gb * GIB) if args.device_memory_gb else None
    plan = plan_for_run(cfg, resolve_model_path(cfg.actor_rollout_ref.model.path),
                        resolve_model_path(cfg.critic.model.path, "critic.model.path"), device_memory)
    print(json.dumps(plan) if args.json else render(plan))
    return plan


if __name__ == "__main__":
    main()
