"""The policy (and reference) model math on one rank: log-probs and the PPO update.

Batches arrive as :class:`DataProto` with ``input_ids``/``attention_mask``/``position_ids`` of shape
(B, P + T) (left-padded prompt of length P, right-padded response of length T), ``responses`` (B, T) and
``response_mask`` (B, T). Rows marked ``is_pad`` (added to even out ranks) carry no loss. In visual mode
each row also has its history image in ``non_tensor_batch["images"]``: a micro-batch's images become one
concatenated ``pixel_values`` tensor plus ``image_grid_thw``, and the position ids become the model's
4-row multimodal RoPE ids (:mod:`verl.utils.vision`), exactly as ``generate`` built them.

Old log-probs from the update: with one PPO epoch over one mini-batch the policy has not changed when
the update's forward runs, so that forward's log-probs *are* the old log-probs (PPO ratio 1, as TRL
does with ``num_iterations=1``). The trainer then skips the separate pass and sends no
``old_log_probs``; :meth:`DataParallelPPOActor.update_policy` takes them from its own forward (detached),
or, when it cannot (several epochs or mini-batches, active dropout), runs the separate pass itself.

Data-parallel exactness: losses are normalised by *global* token (or sequence) counts of the mini-batch
and scaled by the world size, because FSDP2 averages gradients over ranks. So W ranks produce the same
update as one rank on the whole mini-batch (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from verl.protocol import DataProto
from verl.trainer.ppo import core_algos
from verl.utils.packing import response_outputs
from verl.utils.torch_functional import entropy_from_logits, logprobs_from_logits, masked_sum
from verl.utils.vision import VisionInputs, mrope_position_ids, multimodal_inputs
from verl.workers.fsdp_utils import all_reduce_sum, optimizer_step
from verl.workers.zero_advantage import balanced_micro_batches, rows_with_gradient, skips_zero_advantage, zero_gradients

RATIO_METRICS = ("actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower")


def effective_response_mask(data: DataProto) -> torch.Tensor:
    """``response_mask`` with padding rows (``is_pad``) switched off."""
    mask = data.batch["response_mask"].float()
    if "is_pad" in data.non_tensor_batch:
        keep = torch.from_numpy(~data.non_tensor_batch["is_pad"].astype(bool)).to(mask.device)
        mask = mask * keep[:, None].float()
    return mask


def image_inputs(module: torch.nn.Module, images: Any, vision: VisionInputs | None
                 ) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None:
    """A hook adding a micro-batch's pixels and multimodal RoPE ids to the padded model inputs (None for
    a text model without images; images without a vision model are an error there)."""
    if images is None and vision is None:
        return None

    def add(inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        extra = multimodal_inputs(vision, images, inputs["input_ids"])
        if extra:
            inputs["position_ids"] = mrope_position_ids(module, inputs["input_ids"], inputs["attention_mask"],
                                                        extra["image_grid_thw"], extra.pop("mm_token_type_ids"))
            inputs.update(extra)
        return inputs

    return add


def response_log_probs(module: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
                       temperature: float, remove_padding: bool, with_entropy: bool = False,
                       entropy_grad: bool = True, images: Any = None, vision: VisionInputs | None = None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log pi(response token) (B, T) at temperature ``temperature`` (and the entropy there), 0 at padding.

    Only the positions predicting a real response token are projected onto the vocabulary; with
    ``remove_padding`` the sequences are packed into one row (:mod:`verl.utils.packing`). ``images`` (one
    per row) need ``vision``: pixels and multimodal RoPE ids are added (padded layout only). Without
    ``entropy_grad`` the entropy is computed outside the autograd graph (a metric, not a loss term)."""
    logits_KV, slots = response_outputs(module, batch, device, remove_padding, causal_lm=True,
                                        extra_inputs=image_inputs(module, images, vision))
    logits_KV = logits_KV / temperature
    labels_K = batch["responses"].to(device)[slots.rows, slots.cols]
    logp = slots.scatter(logprobs_from_logits(logits_KV, labels_K))
    if not with_entropy:
        return logp, None
    return logp, slots.scatter(entropy_from_logits(logits_KV if entropy_grad else logits_KV.detach()))


def dropout_active(module: torch.nn.Module) -> bool:
    """Whether a train-mode forward differs from an eval-mode one: an ``nn.Dropout`` with p > 0, or a
    config field ``*dropout*`` / ``*pdrop`` > 0 (attention dropout is applied functionally)."""
    if any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in module.modules()):
        return True

    def values(fields: dict) -> list[float]:
        found = []
        for name, value in fields.items():
            if isinstance(value, dict):
                found += values(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and (
                    "dropout" in name or name.endswith("pdrop")):
                found.append(value)
        return found

    config = getattr(module, "config", None)
    return config is not None and any(v > 0 for v in values(config.to_dict()))


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
                 vision: VisionInputs | None = None, remove_padding: bool = False):
        if vision is not None and remove_padding:
            raise ValueError("actor_rollout_ref.model.use_remove_padding=True packs text-only sequences, but the "
                             "policy is a vision model (images and multimodal RoPE ids need the padded layout); "
                             "set actor_rollout_ref.model.use_remove_padding=False")
        self.module = module
        self.vision = vision
        self.cfg = actor_cfg
        self.device = device
        self.world_size = world_size
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.remove_padding = remove_padding  # actor_rollout_ref.model.use_remove_padding

    @torch.no_grad()
    def compute_log_prob(self, data: DataProto, micro_batch_size: int, temperature: float,
                         with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.module.eval()
        logps, ents = [], []
        for micro in data.split(micro_batch_size):
            logp, ent = self._log_probs(micro, temperature, with_entropy)
            logps.append(logp.cpu())
            if with_entropy:
                ents.append(ent.cpu())
        return torch.cat(logps), (torch.cat(ents) if with_entropy else None)

    def _log_probs(self, micro: DataProto, temperature: float, with_entropy: bool, entropy_grad: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        return response_log_probs(self.module, micro.batch, self.device, temperature, self.remove_padding,
                                  with_entropy, entropy_grad, micro.non_tensor_batch.get("images"), self.vision)

    def old_log_probs_from_update(self, data: DataProto) -> bool:
        """Whether the update's first forward gives the old log-probs: one epoch over one mini-batch (no
        optimizer step before any forward) and no dropout (train-mode forward = eval-mode forward)."""
        return (self.cfg.ppo_epochs == 1 and len(split_mini_batches(data)) == 1
                and not dropout_active(self.module))

    def _global_mean(self, total: float, count: float) -> float | None:
        """sum(total) / sum(count) over ranks; None when no rank counted anything."""
        count = all_reduce_sum(count, self.device)
        total = all_reduce_sum(total, self.device)
        return total / count if count > 0 else None

    def _rows_to_run(self, data: DataProto, skip: bool) -> np.ndarray:
        """Indices of the rows whose forward/backward runs: all, or with ``skip`` those with gradient."""
        if not skip:
            return np.arange(len(data))
        return np.flatnonzero(rows_with_gradient(data.batch["advantages"], effective_response_mask(data)))

    def _old_log_probs_first(self, data: DataProto, temperature: float, rows: np.ndarray) -> dict[str, float]:
        """The separate old-policy pass (eval mode) over ``rows``, the only ones the update reads; returns
        ``actor/entropy_rollout`` over them (absent when no rank has any)."""
        old = torch.zeros(data.batch["responses"].shape, dtype=torch.float32)
        entropy_sum = tokens = 0.0
        self.module.eval()
        with torch.no_grad():
            for micro, idx in balanced_micro_batches(data, rows, self.cfg.ppo_micro_batch_size_per_gpu, self.device):
                logp, entropy = self._log_probs(micro, temperature, with_entropy=True)
                if idx is not None:
                    old[idx] = logp.cpu().float()
                    mask = effective_response_mask(micro).to(self.device)
                    entropy_sum += float(masked_sum(entropy, mask))
                    tokens += float(mask.sum())
        data.batch["old_log_probs"] = old
        mean = self._global_mean(entropy_sum, tokens)
        return {} if mean is None else {"actor/entropy_rollout": mean}

    def _skipped_fraction(self, data: DataProto, rows: np.ndarray) -> float:
        """``actor/zero_adv_skipped``: the share of real (non-padding) samples whose passes were skipped."""
        real = np.ones(len(data), bool)
        if "is_pad" in data.non_tensor_batch:
            real = ~data.non_tensor_batch["is_pad"].astype(bool)
        ran = np.zeros(len(data), bool)
        ran[rows] = True
        return self._global_mean(float((real & ~ran).sum()), float(real.sum())) or 0.0

    def update_policy(self, data: DataProto, temperature: float) -> dict[str, float]:
        """PPO epochs over the driver's mini-batches; one optimizer step per mini-batch.

        Without ``old_log_probs`` in ``data`` they come from the update's own forward when
        :meth:`old_log_probs_from_update` holds, else from a separate pass run here first; either way
        ``actor/entropy_rollout`` reports the mean entropy of the old policy on the response tokens.
        With :func:`~verl.workers.zero_advantage.skips_zero_advantage` only the rows with a non-zero
        advantage run (forward, backward, old log-probs) while the loss normalisers count every row: the
        same update, and ``actor/zero_adv_skipped`` says which share of the samples was skipped.
        Loss metrics (``*_loss``) are the mini-batch loss (averaged over mini-batches); the per-token
        ratios (clip fractions, ppo_kl) and ``entropy_rollout`` are averaged over the micro-batches
        (tokens) that ran, on all ranks, and absent when none ran.
        """
        cfg = self.cfg
        skip = skips_zero_advantage(cfg)
        rows = self._rows_to_run(data, skip)
        extra = {"actor/zero_adv_skipped": self._skipped_fraction(data, rows)} if skip else {}
        reuse = "old_log_probs" not in data.batch
        if reuse and not self.old_log_probs_from_update(data):
            extra.update(self._old_log_probs_first(data, temperature, rows))
            reuse = False
        self.module.train()
        losses: dict[str, list[float]] = {}
        ratio_sums = dict.fromkeys(RATIO_METRICS, 0.0)
        n_micro = entropy_sum = tokens = 0.0
        for _ in range(cfg.ppo_epochs):
            for mini in split_mini_batches(data):
                norm = LossNorm.of(mini, self.device, self.world_size)
                self.optimizer.zero_grad(set_to_none=True)
                mini_loss: dict[str, float] = {"actor/pg_loss": 0.0}
                passes = list(balanced_micro_batches(mini, self._rows_to_run(mini, skip),
                                                     cfg.ppo_micro_batch_size_per_gpu, self.device))
                for micro, idx in passes:
                    if idx is None:
                        self._filler_step(micro, temperature)
                        continue
                    loss_stats, ratio_stats, entropy = self._micro_step(micro, temperature, norm, reuse)
                    if reuse:
                        mask = effective_response_mask(micro).to(self.device)
                        entropy_sum += float(masked_sum(entropy, mask))
                        tokens += float(mask.sum())
                    for k, v in loss_stats.items():
                        mini_loss[k] = mini_loss.get(k, 0.0) + v
                    for k, v in ratio_stats.items():
                        ratio_sums[k] += v
                    n_micro += 1
                if not passes:  # no rank ran a pass (all have as many): the full pass's step on zero gradients
                    zero_gradients(self.optimizer)
                mini_loss["actor/grad_norm"] = optimizer_step(self.module, self.optimizer, cfg.grad_clip)
                for k, v in mini_loss.items():
                    losses.setdefault(k, []).append(v)
        metrics = {k: float(np.mean(v)) for k, v in losses.items()}
        for k, total in ratio_sums.items():
            if (mean := self._global_mean(total, n_micro)) is not None:
                metrics[k] = mean
        if reuse and (mean := self._global_mean(entropy_sum, tokens)) is not None:
            extra["actor/entropy_rollout"] = mean
        metrics.update(extra)
        metrics["actor/lr"] = self.lr_scheduler.get_last_lr()[0]
        self.lr_scheduler.step()  # once per training step, so the warm-up ratio counts training steps
        return metrics

    def _filler_step(self, micro: DataProto, temperature: float) -> None:
        """A forward/backward with zero gradient, so this rank joins FSDP's collectives of a pass that
        another rank runs (:func:`~verl.workers.zero_advantage.balanced_micro_batches`)."""
        logp, _ = self._log_probs(micro, temperature, with_entropy=False)
        (logp.sum() * 0.0).backward()

    def _micro_step(self, micro: DataProto, temperature: float, norm: "LossNorm", reuse_old: bool
                    ) -> tuple[dict[str, float], dict[str, float], torch.Tensor | None]:
        """Forward, loss, backward of one micro-batch; with ``reuse_old`` the old log-probs are this
        forward's (detached) and the returned (detached) entropy feeds ``actor/entropy_rollout``."""
        cfg = self.cfg
        b = micro.batch
        mask = effective_response_mask(micro).to(self.device)
        agg = cfg.loss_agg_mode
        gtc, scale = norm.for_micro(agg, mask)

        logp, entropy = self._log_probs(micro, temperature, with_entropy=cfg.entropy_coeff != 0 or reuse_old,
                                        entropy_grad=cfg.entropy_coeff != 0)
        old_logp = logp.detach() if reuse_old else b["old_log_probs"].to(self.device)
        pg = core_algos.compute_policy_loss(
            old_log_prob_BT=old_logp,
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
        ratios = {k: float(pg[k.removeprefix("actor/")]) for k in RATIO_METRICS}
        if cfg.entropy_coeff != 0:
            ent_loss = core_algos.compute_entropy_loss(entropy, mask, agg, global_token_count=gtc)
            loss = loss - cfg.entropy_coeff * ent_loss
            stats["actor/entropy"] = float(ent_loss.detach()) * scale
        if cfg.use_kl_loss:
            kl = core_algos.kl_penalty(logp, b["ref_log_prob"].to(self.device), cfg.kl_loss_type)
            kl_loss = core_algos.agg_loss(kl, mask, agg, global_token_count=gtc)
            loss = loss + cfg.kl_loss_coef * kl_loss
            stats["actor/kl_loss"] = float(kl_loss.detach()) * scale
        (loss * scale).backward()
        return stats, ratios, (entropy.detach() if entropy is not None else None)
