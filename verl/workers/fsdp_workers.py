"""Ray worker roles on FSDP2: the actor (+ rollout engine, + reference policy) and the critic.

One instance per rank, created by :class:`verl.single_controller.RayWorkerGroup`. Methods taking a
:class:`DataProto` receive this rank's equal share of the batch; everything else is called on all
ranks with the same arguments. Checkpoint folders (``<global_step_N>/actor``, ``.../critic``) hold
DCP shards (``model`` + ``optim``), ``extra_state_rank_<r>.pt`` (LR schedule, RNG) and, for the actor,
``huggingface/`` (config, generation config, tokenizer) so ``scripts/model_merger.py`` can build a
release folder from the shards alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig, GenerationConfig

from verl.protocol import DataProto
from verl.single_controller.worker import Worker
from verl.utils.model import (
    eos_token_ids, is_vision_model, load_causal_lm, load_tokenizer, load_value_model, resolve_model_path)
from verl.utils.vision import VisionInputs
from verl.workers import fsdp_utils
from verl.workers.actor import DataParallelPPOActor
from verl.workers.critic import DataParallelPPOCritic
from verl.workers.rollout.base import RolloutEngine
from verl.workers.rollout.hf_rollout import HFRollout

HF_SUBDIR = "huggingface"
DCP_SUBDIR = "dcp"


def _train_dtype(device: torch.device) -> torch.dtype:
    # fp32 master weights everywhere; on GPU FSDP2 computes in bf16 (MixedPrecisionPolicy).
    return torch.float32


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


class ActorRolloutRefWorker(Worker):
    """Policy training (FSDP2), sampling (rollout engine) and, when a KL term is on, the frozen reference."""

    def __init__(self, rank: int, world_size: int, device: str, config: dict, model_path: str,
                 total_training_steps: int, with_ref: bool):
        super().__init__(rank, world_size, device)
        self.cfg: DictConfig = OmegaConf.create(config)
        self.model_path = model_path
        self.total_training_steps = total_training_steps
        self.with_ref = with_ref

    def init_model(self) -> None:
        arr = self.cfg.actor_rollout_ref
        self.tokenizer = load_tokenizer(self.model_path)
        self.vision = VisionInputs(self.model_path, self.tokenizer) if is_vision_model(self.model_path) else None
        module = load_causal_lm(self.model_path, _train_dtype(self.device))
        if arr.model.enable_gradient_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        module = fsdp_utils.shard_model(module, self.device, arr.actor.fsdp_config.param_offload)
        optimizer = fsdp_utils.build_optimizer(module, arr.actor.optim)
        scheduler = fsdp_utils.build_lr_scheduler(
            optimizer, arr.actor.optim.lr_warmup_steps_ratio, max(1, self.total_training_steps))
        self.actor = DataParallelPPOActor(module, arr.actor, self.device, self.world_size, optimizer, scheduler,
                                          self.vision, remove_padding=arr.model.use_remove_padding)
        if self.with_ref:
            ref = load_causal_lm(self.model_path, _train_dtype(self.device))
            ref.requires_grad_(False)
            ref = fsdp_utils.shard_model(ref, self.device, arr.ref.fsdp_config.param_offload)
            self.ref = DataParallelPPOActor(ref, arr.actor, self.device, self.world_size, vision=self.vision,
                                            remove_padding=arr.model.use_remove_padding)
        self.rollout = self._build_rollout()

    def _build_rollout(self) -> RolloutEngine:
        rollout_cfg = self.cfg.actor_rollout_ref.rollout
        common = dict(pad_token_id=self.tokenizer.pad_token_id, eos_token_ids=eos_token_ids(self.tokenizer, self.model_path),
                      response_length=self.cfg.data.max_response_length, rank=self.rank)
        if rollout_cfg.name == "vllm":
            from verl.workers.rollout.vllm_rollout import VLLMRollout

            return VLLMRollout(resolve_model_path(self.model_path), rollout_cfg, dtype=_rollout_dtype(self.device),
                               device=self.device, prompt_length=self.cfg.data.max_prompt_length,
                               seed=self.cfg.trainer.seed, **common)
        model = load_causal_lm(self.model_path, _rollout_dtype(self.device))
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
        logp, _ = self.ref.compute_log_prob(
            data, self.cfg.actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu, data.meta_info["temperature"])
        return DataProto.from_dict({"ref_log_prob": logp})

    def update_actor(self, data: DataProto) -> DataProto:
        self.rollout.release_memory()  # e.g. vLLM's KV cache, taken back by the sync below
        metrics = self.actor.update_policy(data, data.meta_info["temperature"])
        self.sync_rollout_weights()
        return DataProto(meta_info={"metrics": metrics})

    def sync_rollout_weights(self) -> None:
        """Push the updated policy into the rollout engine (an all-gather of the FSDP shards)."""
        self.rollout.load_weights(fsdp_utils.full_state_dict(self.actor.module).items())

    def save_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        fsdp_utils.save_sharded(self.actor.module, self.actor.optimizer, path / DCP_SUBDIR)
        _save_extra_state(path, self.rank, self.actor.lr_scheduler)
        if self.rank == 0:
            hf = path / HF_SUBDIR
            AutoConfig.from_pretrained(self.model_path).save_pretrained(hf)
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
        fsdp_utils.load_sharded(self.actor.module, self.actor.optimizer, path / DCP_SUBDIR)
        _load_extra_state(path, self.rank, self.actor.lr_scheduler)
        self.sync_rollout_weights()


class CriticWorker(Worker):
    """The value model for GAE: the policy backbone with a scalar token head (verl's critic)."""

    def __init__(self, rank: int, world_size: int, device: str, config: dict, model_path: str,
                 total_training_steps: int, seed: int):
        super().__init__(rank, world_size, device)
        self.cfg: DictConfig = OmegaConf.create(config)
        self.model_path = model_path
        self.total_training_steps = total_training_steps
        self.seed = seed

    def init_model(self) -> None:
        critic_cfg = self.cfg.critic
        torch.manual_seed(self.seed)  # the fresh value head must be identical on every rank
        module = load_value_model(self.model_path, _train_dtype(self.device))
        if critic_cfg.model.enable_gradient_checkpointing:
            module.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        module = fsdp_utils.shard_model(module, self.device, critic_cfg.model.fsdp_config.param_offload)
        optimizer = fsdp_utils.build_optimizer(module, critic_cfg.optim)
        scheduler = fsdp_utils.build_lr_scheduler(
            optimizer, critic_cfg.optim.lr_warmup_steps_ratio, max(1, self.total_training_steps))
        self.critic = DataParallelPPOCritic(module, critic_cfg, self.device, self.world_size, optimizer, scheduler,
                                           remove_padding=critic_cfg.model.use_remove_padding)

    def compute_values(self, data: DataProto) -> DataProto:
        return DataProto.from_dict({"values": self.critic.compute_values(data)})

    def update_critic(self, data: DataProto) -> DataProto:
        return DataProto(meta_info={"metrics": self.critic.update_critic(data)})

    def save_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        fsdp_utils.save_sharded(self.critic.module, self.critic.optimizer, path / DCP_SUBDIR)
        _save_extra_state(path, self.rank, self.critic.lr_scheduler)
        dist.barrier()

    def load_checkpoint(self, folder: str) -> None:
        path = Path(folder)
        fsdp_utils.load_sharded(self.critic.module, self.critic.optimizer, path / DCP_SUBDIR)
        _load_extra_state(path, self.rank, self.critic.lr_scheduler)
