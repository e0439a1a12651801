"""The policy (and reference) model math on one rank: log-probs and the PPO update.

Batches arrive as :class:`DataProto` with ``input_ids``/``attention_mask``/``position_ids`` of shape
(B, P + T) (left-padded prompt of length P, right-padded response of length T), ``responses`` (B, T) and
``response_mask`` (B, T). Rows marked ``is_pad`` (added to even out ranks) carry no loss. In visual mode
each row also has its history image in ``non_tensor_batch["images"]``: a micro-batch's images become one
concatenated ``pixel_values`` tensor plus ``image_grid_thw``, and the position ids become the model's
4-row multimodal RoPE ids (:mod:`verl.utils.vision`), exactly as ``generate`` built them.

Data-parallel exactness: losses are normalised by *global* token (or sequence) counts of the mini-batch
and scaled by the world size, because FSDP2 averages gradients over ranks. So W ranks produce the same
update as one rank on the whole mini-batch (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits, trim_left_padding
from verl.utils.vision import VisionInputs, mrope_position_ids, multimodal_inputs
from verl.workers.fsdp_utils import all_reduce_sum, optimizer_step


def effective_response_mask(data: DataProto) -> torch.Tensor:
    """``response_mask`` with padding rows (``is_pad``) switched off."""
    mask = data.batch["response_mask"].float()
    if "is_pad" in data.non_tensor_batch:
        keep = torch.from_numpy(~data.non_tensor_batch["is_pad"].astype(bool)).to(mask.device)
        mask = mask * keep[:, None].float()
    return mask


def response_logits(module: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
                    images: Any = None, vision: VisionInputs | None = None) -> torch.Tensor:
    """Logits (B, T, V) predicting each response token (the position before it). Only those T
    positions are projected onto the vocabulary (``logits_to_keep``), not the whole prompt.
    ``images`` (one per row) need ``vision``: pixels and multimodal RoPE ids are added."""
    t = batch["responses"].shape[1]
    inputs = trim_left_padding(batch, device)
    extra = multimodal_inputs(vision, images, inputs["input_ids"])
    if extra:
        inputs["position_ids"] = mrope_position_ids(module, inputs["input_ids"], inputs["attention_mask"],
                                                    extra["image_grid_thw"], extra.pop("mm_token_type_ids"))
        inputs.update(extra)
    out = module(**inputs, use_cache=False, logits_to_keep=t + 1)
    return out.logits[:, :-1, :]


def layout_mini_batches(batch: DataProto, world_size: int, mini_batch_samples: int) -> list[DataProto]:
    """Driver side: one chunk per rank such that global mini-batch k is the same samples for any world size.

    The batch is padded to a multiple of ``world_size`` (``is_pad`` rows carry no loss), cut into global
    mini-batches of ``mini_batch_samples`` (rounded up to a multiple of the world size), and rank r gets
    the r-th slice of every mini-batch; :func:`split_mini_batches` undoes this on the rank.
    """
    padded, _ = batch.pad_to_divisor(world_size)
    per_mini = -(-mini_batch_samples // world_size) * world_size
    minis = padded.split(per_mini)
    chunks = []
    for rank in range(world_size):
        parts = [m.chunk(world_size)[rank] for m in minis]
        chunk = DataProto.concat(parts)
        chunk.meta_info = {**batch.meta_info, "mini_batch_sizes": [len(p) for p in parts]}
        chunks.append(chunk)
    return chunks


def split_mini_batches(data: DataProto) -> list[DataProto]:
    """Rank side: this rank's mini-batches as laid out by :func:`layout_mini_batches`."""
    sizes = data.meta_info.get("mini_batch_sizes") or [len(data)]
    bounds = np.cumsum([0, *sizes])
    return [data.select_idxs(slice(int(a), int(b))) for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class LossNorm:
    """Global normalisers of one mini-batch, so per-rank micro-batch losses add up to the global loss.

    token-mean: divide token sums by (global valid tokens / world size). seq-mean modes: weight each
    micro-batch's mean over its non-empty rows by (its rows x world size / global non-empty rows).
    The world-size factors undo FSDP's averaging of gradients over ranks.
    """

    global_tokens: float
    global_rows: float
    world_size: int

    @classmethod
    def of(cls, mini: DataProto, device: torch.device, world_size: int) -> "LossNorm":
        mask = effective_response_mask(mini)
        return cls(all_reduce_sum(mask.sum().item(), device),
                   all_reduce_sum((mask.sum(-1) > 0).sum().item(), device), world_size)

    def for_micro(self, loss_agg_mode: str, mask: torch.Tensor) -> tuple[float | None, float]:
        """(global_token_count for agg_loss, factor on the micro-batch loss)."""
        if loss_agg_mode == "token-mean":
            return max(self.global_tokens, 1.0) / self.world_size, 1.0
        rows = float((mask.sum(-1) > 0).sum())
        return None, rows * self.world_size / max(self.global_rows, 1.0)


class DataParallelPPOActor:
    def __init__(self, module: torch.nn.Module, actor_cfg: Any, device: torch.device, world_size: int,
                 optimizer: torch.optim.Optimizer | None = None, lr_scheduler: Any = None,
                 vision: VisionInputs | None = None):
        self.module = module
        self.vision = vision
        self.cfg = actor_cfg
        self.device = device
        self.world_size = world_size
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler

    @torch.no_grad()
    def compute_log_prob(self, data: DataProto, micro_batch_size: int, temperature: float,
                         with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.module.eval()
        logps, ents = [], []
        for micro in data.split(micro_batch_size):
            logits = self._logits(micro) / temperature
            logps.append(logprobs_from_logits(logits, micro.batch["responses"].to(self.device)).cpu())
            if with_entropy:
                ents.append(entropy_from_logits(logits).cpu())
        return torch.cat(logps), (torch.cat(ents) if with_entropy else None)

    def _logits(self, micro: DataProto) -> torch.Tensor:
        return response_logits(self.module, micro.batch, self.device, micro.non_tensor_batch.get("images"),
                               self.vision)

    def update_policy(self, data: DataProto, temperature: float) -> dict[str, float]:
        """PPO epochs over the driver's mini-batches; one optimizer step per mini-batch.

        Loss metrics (``*_loss``) are the mini-batch loss (averaged over mini-batches); the per-token
        ratios (clip fractions, ppo_kl) are averaged over micro-batches.
        """
        cfg = self.cfg
        self.module.train()
        losses: dict[str, list[float]] = {}
        ratios: dict[str, list[float]] = {}
        for _ in range(cfg.ppo_epochs):
            for mini in split_mini_batches(data):
                norm = LossNorm.of(mini, self.device, self.world_size)
                self.optimizer.zero_grad(set_to_none=True)
                mini_loss: dict[str, float] = {}
                for micro in mini.split(cfg.ppo_micro_batch_size_per_gpu):
                    loss_stats, ratio_stats = self._micro_step(micro, temperature, norm)
                    for k, v in loss_stats.items():
                        mini_loss[k] = mini_loss.get(k, 0.0) + v
                    for k, v in ratio_stats.items():
                        ratios.setdefault(k, []).append(v)
                grad_norm = optimizer_step(self.module, self.optimizer, cfg.grad_clip)
                mini_loss["actor/grad_norm"] = grad_norm
                for k, v in mini_loss.items():
                    losses.setdefault(k, []).append(v)
        metrics = {k: float(np.mean(v)) for k, v in {**losses, **ratios}.items()}
        metrics["actor/lr"] = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()  # once per training step, so the warm-up ratio counts training steps
        return metrics

    def _micro_step(self, micro: DataProto, temperature: float, norm: "LossNorm"
                    ) -> tuple[dict[str, float], dict[str, float]]:
        cfg = self.cfg
        b = micro.batch
        mask = effective_response_mask(micro).to(self.device)
        agg = cfg.loss_agg_mode
        gtc, scale = norm.for_micro(agg, mask)

        logits = self._logits(micro) / temperature
        logp = logprobs_from_logits(logits, b["responses"].to(self.device))
        entropy = entropy_from_logits(logits) if cfg.entropy_coeff != 0 else None
        pg = core_algos.compute_policy_loss(
            old_log_prob_BT=b["old_log_probs"].to(self.device),
            log_prob_BT=logp,
            advantages_BT=b["advantages"].to(self.device),
            response_mask_BT=mask,
            clip_ratio_low=cfg.clip_ratio_low,
            clip_ratio_high=cfg.clip_ratio_high,
            clip_ratio_c=cfg.clip_ratio_c,
            loss_agg_mode=agg,
            loss_mode=cfg.policy_loss.loss_mode,
            global_token_count=gtc,
        )
        loss = pg["pg_loss"]
        stats = {"actor/pg_loss": float(loss.detach()) * scale}
        ratios = {k: float(pg[k]) for k in ("pg_clipfrac", "ppo_kl", "pg_clipfrac_lower")}
        ratios = {f"actor/{k}": v for k, v in ratios.items()}
        if entropy is not None:
            ent_loss = core_algos.compute_entropy_loss(entropy, mask, agg, global_token_count=gtc)
            loss = loss - cfg.entropy_coeff * ent_loss
            stats["actor/entropy"] = float(ent_loss.detach()) * scale
        if cfg.use_kl_loss:
            kl = core_algos.kl_penalty(logp, b["ref_log_prob"].to(self.device), cfg.kl_loss_type)
            kl_loss = core_algos.agg_loss(kl, mask, agg, global_token_count=gtc)
            loss = loss + cfg.kl_loss_coef * kl_loss
            stats["actor/kl_loss"] = float(kl_loss.detach()) * scale
        (loss * scale).backward()
        return stats, ratios
