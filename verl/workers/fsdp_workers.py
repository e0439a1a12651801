"""Ray worker roles on FSDP2: the actor (+ rollout engine, + reference policy) and the critic.

Roles colocated in one process per rank (:class:`verl.single_controller.Worker`), reached through a
:class:`verl.single_controller.RayWorkerGroup`. Methods taking a :class:`DataProto` receive this rank's
equal share of the batch; everything else is called on all ranks with the same arguments. Models are
read once, on rank 0, and reach the other ranks' FSDP2 shards by broadcast; the rollout engine's copy is
filled by the streamed weight sync (:mod:`verl.workers.weight_sync`). A Qwen2.5-VL policy (visual mode) is
built and synced the same way. Checkpoint folders (``<global_step_N>/actor``, ``.../critic``) hold DCP
shards (``model`` + ``optim``), ``extra_state_rank_<r>.pt`` (LR schedule, RNG) and, for the actor,
``huggingface/`` (config, generation config, tokenizer; the image processor of a vision-language model)
so ``scripts/model_merger.py`` can build a release folder from the shards alone. With LoRA
(:mod:`verl.utils.lora`) the shards hold only the adapters and their optimizer state, and
``lora/adapter_config.json`` names the base model they apply to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, AutoModelForTokenClassification, GenerationConfig

from verl.protocol import DataProto
from verl.single_controller.worker import peak_memory
from verl.utils import lora
from verl.utils.model import (
    causal_lm_class,
    disable_dropout,
    eos_token_ids,
    load_causal_lm,
    load_tokenizer,
    load_value_model,
    resolve_model_path,
    value_model_config,
)
from verl.utils.vision import VisionInputs
from verl.workers import fsdp_utils, weight_sync
from verl.workers.actor import DataParallelPPOActor
from verl.workers.critic import DataParallelPPOCritic
from verl.workers.rollout.base import RolloutEngine
from verl.workers.rollout.hf_rollout import HFRollout

HF_SUBDIR = "huggingface"
DCP_SUBDIR = "dcp"


TRAIN_DTYPE = torch.float32  # master weights everywhere; on GPU FSDP2 computes in bf16 (fsdp_utils.shard_model)


def _rollout_dtype(device: torch.device) -> torch.dtype:
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _extra_state_path(folder: Path, rank: int) -> Path:
    return folder / f"extra_state_rank_{rank}.pt"


def _save_extra_state(folder: Path, rank: int, lr_scheduler: Any) -> None:
    state = {"lr_scheduler": lr_scheduler.state_dict(), "cpu_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    torch.save(state, _extra_state_path(folder, rank))


def _load_extra_state(folder: Path, rank: int, lr_scheduler: Any) -> None:
    path = _extra_state_path(folder, rank)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the checkpoint was written by a different number of ranks "
                                "or is incomplete; resume with the same trainer.nnodes x n_gpus_per_node")
    state = torch.load(path, weights_only=False)
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    torch.set_rng_state(state["cpu_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])


def _sharded_model(model_cls, config, checkpoint: weight_sync.Rank0Checkpoint, device: torch.device,
                   param_offload: bool, gradient_checkpointing: bool, trainable: bool,
                   trust_remote_code: bool, prepare: weight_sync.Prepare | None = None) -> torch.nn.Module:
    """``config``'s model built on the meta device, sharded with FSDP2 and filled from rank 0's checkpoint.
    ``prepare`` (the LoRA wrap, which also decides what is trainable) applies before sharding, as it did
    to rank 0's checkpoint."""
    module = weight_sync.meta_model(model_cls, config, TRAIN_DTYPE, trust_remote_code=trust_remote_code)
    if gradient_checkpointing:
        module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    module.requires_grad_(trainable)
    if prepare is not None:
        module = prepare(module)
    module = fsdp_utils.shard_model(module, device, param_offload)
    weight_sync.load_into_shards(module, checkpoint, device, param_offload)
    return module


def _memory_metrics(device: torch.device) -> dict[str, float]:
    return {f"perf/max_{k}_gb": v / 2**30 for k, v in peak_memory(device).items()}


class ActorRolloutRefWorker:
    """Policy training (FSDP2), sampling (rollout engine) and, when a KL term is on, the frozen reference."""

    def __init__(self, rank: int, world_size: int, device: torch.device, config: dict, model_path: str,
                 total_training_steps: int, with_ref: bool):
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.cfg: DictConfig = OmegaConf.create(config)
        self.model_path = model_path
        self.total_training_steps = total_training_steps
        self.with_ref = with_ref
        self.rollout_dtype = _rollout_dtype(device)

    def init_model(self) -> None:
        arr = self.cfg.actor_rollout_ref
        trust = arr.model.trust_remote_code
        self.tokenizer = load_tokenizer(self.model_path, trust_remote_code=trust)
        self.hf_config = AutoConfig.from_pretrained(self.model_path, trust_remote_code=trust)
        self.model_cls = causal_lm_class(self.hf_config)  # image-text-to-text for Qwen2.5-VL (visual mode)
        is_vl = getattr(self.hf_config, "vision_config", None) is not None
        self.vision = VisionInputs(self.model_path, self.tokenizer) if is_vl else None
        self.lora = lora.lora_enabled(arr.model)
        prepare = lora.seeded_wrapper(arr.model, self.cfg.trainer.seed, self.model_path) if self.lora else None

        def load() -> torch.nn.Module:
            model = load_causal_lm(self.model_path, "auto", trust_remote_code=trust)
            return prepare(model) if prepare else model

        # in the checkpoint's own dtype (bf16 for Qwen2.5: half the host RAM); the shards are fp32 either way
        checkpoint = weight_sync.read_on_rank0(load)
        fsdp = arr.actor.fsdp_config
        module = _sharded_model(self.model_cls, self.hf_config, checkpoint, self.device, fsdp.param_offload,
                                arr.model.enable_gradient_checkpointing, trainable=True, trust_remote_code=trust,
                                prepare=prepare)
        optimizer = fsdp_utils.build_optimizer(module, arr.actor.optim)
        scheduler = fsdp_utils.build_lr_scheduler(
            optimizer, arr.actor.optim.lr_warmup_steps_ratio, max(1, self.total_training_steps))
        self.optim_devices = fsdp_utils.optimizer_state_devices(self.device, fsdp.param_offload, fsdp.optimizer_offload)
        self.actor = DataParallelPPOActor(module, arr.actor, self.device, self.world_size, optimizer, scheduler,
                                          self.vision, remove_padding=arr.model.use_remove_padding)
        if self.with_ref and not self.lora:  # with LoRA the reference is the actor with its adapters off
            ref = _sharded_model(self.model_cls, self.hf_config, checkpoint, self.device,
                                 arr.ref.fsdp_config.param_offload, False, trainable=False, trust_remote_code=trust)
            self.ref = DataParallelPPOActor(ref, arr.actor, self.device, self.world_size, vision=self.vision,
                                            remove_padding=arr.model.use_remove_padding)
        del checkpoint  # rank 0's full copy
        self.rollout = self._build_rollout()
        self.sync_rollout_weights()

    def _build_rollout(self) -> RolloutEngine:
        """The rollout engine, without the policy's weights: the first weight sync (end of :meth:`init_model`)
        fills it. The hf engine gets an uninitialised copy of the policy in the rollout dtype, vLLM starts
        from dummy weights; neither reads the checkpoint again."""
        rollout_cfg = self.cfg.actor_rollout_ref.rollout
        trust = self.cfg.actor_rollout_ref.model.trust_remote_code
        common = dict(pad_token_id=self.tokenizer.pad_token_id, response_length=self.cfg.data.max_response_length,
                      eos_token_ids=eos_token_ids(self.tokenizer, self.model_path, trust_remote_code=trust),
                      rank=self.rank)
        if rollout_cfg.name == "vllm":
            from verl.workers.rollout.vllm_rollout import VLLMRollout

            return VLLMRollout(resolve_model_path(self.model_path), rollout_cfg, dtype=self.rollout_dtype,
                               device=self.device, prompt_length=self.cfg.data.max_prompt_length,
                               seed=self.cfg.trainer.seed, load_format="dummy", trust_remote_code=trust, **common)
        policy = self.actor.module.get_base_model() if self.lora else self.actor.module
        model = weight_sync.empty_copy(self.model_cls, self.hf_config, self.rollout_dtype, self.device,
                                       buffers_from=policy, trust_remote_code=trust)
        return HFRollout(model, self.device, micro_batch_size=rollout_cfg.micro_batch_size, vision=self.vision,
                         **common)

    def generate_sequences(self, prompts: DataProto) -> DataProto:
        return self.rollout.generate(prompts)

    def compute_log_prob(self, data: DataProto) -> DataProto:
        logp, ent = self.actor.compute_log_prob(
            data, self.cfg.actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu,
            data.meta_info["temperature"], with_entropy=True)
        return DataProto.from_dict({"old_log_probs": logp, "entropys": ent})

    def compute_ref_log_prob(self, data: DataProto) -> DataProto:
        micro = self.cfg.actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu
        temperature = data.meta_info["temperature"]
        if self.lora:  # the base model: the same shards with the adapters switched off
            with self.actor.module.disable_adapter():
                logp, _ = self.actor.compute_log_prob(data, micro, temperature)
        else:
            logp, _ = self.ref.compute_log_prob(data, micro, temperature)
        return DataProto.from_dict({"ref_log_prob": logp})

    def update_actor(self, data: DataProto) -> DataProto:
        self.rollout.release_memory()  # e.g. vLLM's KV cache, taken back by the sync below
        with fsdp_utils.optimizer_state_on(self.actor.optimizer, *self.optim_devices):
            metrics = self.actor.update_policy(data, data.meta_info["temperature"])
        self.actor.optimizer.zero_grad(set_to_none=True)  # no gradients held through the next rollout
        metrics.update(_memory_metrics(self.device))
        self.sync_rollout_weights()
        return DataProto(meta_info={"metrics": metrics})

    def sync_rollout_weights(self) -> None:
        """Stream the policy into the rollout engine, one all-gathered parameter at a time."""
        self.rollout.load_weights(weight_sync.stream_policy(self.actor.module, self.rollout_dtype))

    def save_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        fsdp_utils.save_sharded(self.actor.module, self.actor.optimizer, path / DCP_SUBDIR, trainable_only=self.lora)
        _save_extra_state(path, self.rank, self.actor.lr_scheduler)
        if self.rank == 0:
            if self.lora:  # adapter_config.json: rank, alpha, targets and the base model path (for the merger)
                self.actor.module.peft_config[lora.ADAPTER].save_pretrained(path / lora.SUBDIR)
            hf = path / HF_SUBDIR
            self.hf_config.save_pretrained(hf)
            try:
                GenerationConfig.from_pretrained(self.model_path).save_pretrained(hf)
            except OSError:
                pass  # the model ships no generation config
            self.tokenizer.save_pretrained(hf)
            if self.vision is not None:
                self.vision.processor.save_pretrained(hf)
        dist.barrier()

    def load_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        lora.check_checkpoint(path, self.cfg.actor_rollout_ref.model)
        fsdp_utils.load_sharded(self.actor.module, self.actor.optimizer, path / DCP_SUBDIR, trainable_only=self.lora)
        fsdp_utils.place_optimizer_state(self.actor.optimizer, self.optim_devices[1])
        _load_extra_state(path, self.rank, self.actor.lr_scheduler)
        self.sync_rollout_weights()


class CriticWorker:
    """The value model for GAE: the policy backbone with a scalar token head (verl's critic)."""

    def __init__(self, rank: int, world_size: int, device: torch.device, config: dict, model_path: str,
                 total_training_steps: int, seed: int):
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.cfg: DictConfig = OmegaConf.create(config)
        self.model_path = model_path
        self.total_training_steps = total_training_steps
        self.seed = seed

    def init_model(self) -> None:
        critic_cfg = self.cfg.critic
        trust = self.cfg.actor_rollout_ref.model.trust_remote_code
        config = value_model_config(self.model_path, trust)  # one label, every dropout off (as verl's critic)
        torch.manual_seed(self.seed)  # the fresh value head (drawn on rank 0, broadcast) is reproducible
        checkpoint = weight_sync.read_on_rank0(lambda: load_value_model(self.model_path, TRAIN_DTYPE, trust))
        fsdp = critic_cfg.model.fsdp_config
        module = _sharded_model(AutoModelForTokenClassification, config, checkpoint, self.device, fsdp.param_offload,
                                critic_cfg.model.enable_gradient_checkpointing, trainable=True, trust_remote_code=trust)
        disable_dropout(module)
        optimizer = fsdp_utils.build_optimizer(module, critic_cfg.optim)
        scheduler = fsdp_utils.build_lr_scheduler(
            optimizer, critic_cfg.optim.lr_warmup_steps_ratio, max(1, self.total_training_steps))
        self.optim_devices = fsdp_utils.optimizer_state_devices(self.device, fsdp.param_offload, fsdp.optimizer_offload)
        self.critic = DataParallelPPOCritic(module, critic_cfg, self.device, self.world_size, optimizer, scheduler,
                                           remove_padding=critic_cfg.model.use_remove_padding)

    def compute_values(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"values": self.critic.compute_values(data)})

    def update_critic(self, data: DataProto) -> DataProto:
        with fsdp_utils.optimizer_state_on(self.critic.optimizer, *self.optim_devices):
            metrics = self.critic.update_critic(data)
        self.critic.optimizer.zero_grad(set_to_none=True)
        return DataProto(meta_info={"metrics": metrics})

    def save_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        fsdp_utils.save_sharded(self.critic.module, self.critic.optimizer, path / DCP_SUBDIR)
        _save_extra_state(path, self.rank, self.critic.lr_scheduler)
        dist.barrier()

    def load_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        fsdp_utils.load_sharded(self.critic.module, self.critic.optimizer, path / DCP_SUBDIR)
        fsdp_utils.place_optimizer_state(self.critic.optimizer, self.optim_devices[1])
        _load_extra_state(path, self.rank, self.critic.lr_scheduler)
