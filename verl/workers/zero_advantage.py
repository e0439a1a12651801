"""Skipping samples whose policy gradient is exactly zero (``actor_rollout_ref.actor.skip_zero_advantage``).

The clipped PPO surrogate (Schulman et al. 2017, Eq. 7; dual clip, Ye et al. 2020) and GSPO's
(Zheng et al. 2025) are the advantage times a function of the ratio: for A = 0 a token's loss is 0
whatever the ratio, and so is its gradient. When nothing else enters the loss (no entropy bonus, no KL
loss), a sample whose response-token advantages are all 0 contributes exactly zero gradient, and its
forward and backward can be skipped without changing the update, provided the loss normalisers
(:class:`verl.workers.actor.LossNorm`) still count it. GRPO gives A = 0 to every sample of a group whose
rewards are all equal (all fail or all succeed), which on hard tasks is most groups.

Under FSDP2 every forward all-gathers and every backward reduce-scatters over all ranks, so each rank
must run the same number of passes: :func:`balanced_micro_batches` pads a rank's list with a one-row
filler pass (loss x 0: zero gradient) up to the largest count of any rank. A mini-batch no rank runs
still takes its optimizer step, on zero gradients (:func:`zero_gradients`), exactly as the full pass would.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch

from verl.protocol import DataProto
from verl.workers.fsdp_utils import all_reduce_max

# policy loss modes whose loss is a multiple of the advantage (core_algos.compute_policy_loss)
ZERO_AT_ZERO_ADVANTAGE = ("vanilla", "gspo")


def skips_zero_advantage(actor_cfg: Any) -> bool:
    """Whether zero-advantage samples are skipped: the knob is on and their gradient is exactly zero
    (a policy loss proportional to A, ``entropy_coeff == 0`` and no KL loss)."""
    return bool(actor_cfg.skip_zero_advantage and actor_cfg.policy_loss.loss_mode in ZERO_AT_ZERO_ADVANTAGE
                and actor_cfg.entropy_coeff == 0 and not actor_cfg.use_kl_loss)


def rows_with_gradient(advantages_BT: torch.Tensor, mask_BT: torch.Tensor) -> np.ndarray:
    """(B,) bool: rows with a non-zero advantage on a valid response token (NaN counts as non-zero)."""
    return ((advantages_BT != 0) & mask_BT.bool()).any(dim=-1).cpu().numpy()


def balanced_micro_batches(data: DataProto, rows: np.ndarray, micro_size: int, device: torch.device
                           ) -> Iterator[tuple[DataProto, np.ndarray | None]]:
    """``data``'s ``rows`` (indices) in micro-batches of ``micro_size``, as ``(micro, its row indices)``,
    then ``(one-row filler, None)`` passes until every rank has yielded the same number (the largest
    rank's count; a collective, so every rank must call this). With all rows on every rank this is
    ``data.split(micro_size)``."""
    chunks = [rows[i:i + micro_size] for i in range(0, len(rows), micro_size)]
    passes = all_reduce_max(len(chunks), device)
    for idx in chunks:
        yield data.select_idxs(idx), idx
    if passes > len(chunks):
        filler = data.select_idxs([_filler_row(data)])
        for _ in range(passes - len(chunks)):
            yield filler, None


def _filler_row(data: DataProto) -> int:
    """A row with at least one response token, so the filler's forward reaches every layer."""
    has_response = data.batch["response_mask"].sum(-1) > 0
    return int(torch.argmax(has_response.int())) if len(data) else 0


def zero_gradients(optimizer: torch.optim.Optimizer) -> None:
    """Set every optimised parameter's gradient to zeros (DTensor shards stay DTensors).

    AdamW skips a parameter whose ``.grad`` is None (no weight decay, no moment decay, no step count);
    with zeros its step is the one a full forward/backward of zero-advantage samples gives."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = torch.zeros_like(p)
