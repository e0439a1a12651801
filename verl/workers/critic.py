"""The value model math on one rank (``algorithm.adv_estimator=gae``): values and the value update.

The critic is the policy's backbone with a one-output token-classification head; the value of a
response token is read at the position that predicts it, exactly like the actor's log-probs.
Normalisation over ranks follows :mod:`verl.workers.actor` so W ranks match one rank.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.utils.packing import response_outputs
from verl.workers.actor import LossNorm, effective_response_mask, split_mini_batches
from verl.workers.fsdp_utils import optimizer_step


def response_values(module: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
                    remove_padding: bool) -> torch.Tensor:
    """Values (B, T) read at the positions that predict the response tokens, 0 at padding; with
    ``remove_padding`` the sequences are packed into one row (:mod:`verl.utils.packing`)."""
    values_K1, slots = response_outputs(module, batch, device, remove_padding, causal_lm=False)
    return slots.scatter(values_K1[:, 0].float())


class DataParallelPPOCritic:
    def __init__(self, module: torch.nn.Module, critic_cfg: Any, device: torch.device, world_size: int,
                 optimizer: torch.optim.Optimizer, lr_scheduler: Any, remove_padding: bool = False):
        self.module = module
        self.remove_padding = remove_padding  # critic.model.use_remove_padding
        self.cfg = critic_cfg
        self.device = device
        self.world_size = world_size
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler

    @torch.no_grad()
    def compute_values(self, data: DataProto) -> torch.Tensor:
        self.module.eval()
        values = [response_values(self.module, m.batch, self.device, self.remove_padding).cpu()
                  for m in data.split(self.cfg.ppo_micro_batch_size_per_gpu)]
        return torch.cat(values) * effective_response_mask(data)

    def update_critic(self, data: DataProto) -> dict[str, float]:
        cfg = self.cfg
        self.module.train()
        losses, clipfracs, grad_norms = [], [], []
        for _ in range(cfg.ppo_epochs):
            for mini in split_mini_batches(data):
                norm = LossNorm.of(mini, self.device, self.world_size)
                self.optimizer.zero_grad(set_to_none=True)
                mini_loss = 0.0
                for micro in mini.split(cfg.ppo_micro_batch_size_per_gpu):
                    b = micro.batch
                    mask = effective_response_mask(micro).to(self.device)
                    gtc, scale = norm.for_micro(cfg.loss_agg_mode, mask)
                    vpreds = response_values(self.module, b, self.device, self.remove_padding)
                    vf_loss, vf_clipfrac = core_algos.compute_value_loss(
                        vpreds_BT=vpreds, returns_BT=b["returns"].to(self.device), values_BT=b["values"].to(self.device),
                        response_mask_BT=mask, cliprange_value=cfg.cliprange_value, loss_agg_mode=cfg.loss_agg_mode,
                        global_token_count=gtc)
                    (vf_loss * scale).backward()
                    mini_loss += float(vf_loss.detach()) * scale
                    clipfracs.append(float(vf_clipfrac))
                grad_norm = optimizer_step(self.module, self.optimizer, cfg.grad_clip)
                losses.append(mini_loss)
                grad_norms.append(grad_norm)
        lr = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()  # once per training step, as the actor
        return {"critic/vf_loss": float(np.mean(losses)), "critic/vf_clipfrac": float(np.mean(clipfracs)),
                "critic/grad_norm": float(np.mean(grad_norms)), "critic/lr": lr}
