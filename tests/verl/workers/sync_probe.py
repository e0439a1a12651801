"""A test-only actor role (importable by Ray workers, unlike pytest's test modules)."""

from __future__ import annotations

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from verl.workers.fsdp_workers import ActorRolloutRefWorker


class SyncProbe(ActorRolloutRefWorker):
    """The actor role plus read-outs of the rollout engine's weights and of the pre-streaming sync path."""

    def full_gather_for_rollout(self) -> dict[str, torch.Tensor]:
        """What the rollout engine received before the streamed sync: the whole fp32 state dict all-gathered
        on every rank (``get_model_state_dict(full_state_dict=True)``), cast to the engine dtype."""
        full = get_model_state_dict(self.actor.module, options=StateDictOptions(full_state_dict=True))
        return {k: v.to(self.rollout_dtype) for k, v in full.items()}

    def rollout_state(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.rollout.model.state_dict().items()}

    def rollout_buffers(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.rollout.model.named_buffers()}

    def rollout_is_tied(self) -> bool:
        model = self.rollout.model
        return model.lm_head.weight is model.get_input_embeddings().weight

    def perturb_adapters(self, seed: int) -> None:
        """Give every LoRA ``B`` (zero at init) random values in place, without a weight sync."""
        g = torch.Generator().manual_seed(seed + self.rank)
        with torch.no_grad():
            for name, param in self.actor.module.named_parameters():
                if ".lora_B." in name:
                    local = param.to_local()
                    local.copy_(torch.randn(local.shape, generator=g) * 0.5)

    def greedy(self, prompts) -> torch.Tensor:
        prompts.meta_info = {"do_sample": False}
        return self.rollout.generate(prompts).batch["responses"]
