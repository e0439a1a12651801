"""One forward of a causal model over a (B, P + T) batch that yields only what the response tokens need.

Training batches hold left-padded prompts (P columns) followed by right-padded responses (T columns);
``attention_mask`` marks the real tokens (the response part equals ``response_mask``). The actor needs
the logits at the K positions that *predict* a real response token, the critic the values there.
Two layouts give the same numbers (up to float rounding; tested):

- **padded** (``use_remove_padding=False``): the batch without the columns that are padding in every
  row, at the left (prompt side) and at the right (response side), as one (B, S') forward;
- **packed** (``use_remove_padding=True``): every row's real tokens, concatenated into one (1, N) row
  with position ids restarting at 0 per sequence and no attention mask. Transformers then builds a
  block-diagonal causal mask from the position ids (``masking_utils.find_packed_sequence_indices``; sdpa
  and eager attention, the pure-torch path) or runs flash-attention-2's varlen kernel when the model was
  loaded with it — the same ``position_ids`` convention as verl's ``use_remove_padding`` / flash-attn
  ``cu_seqlens``. No compute is spent on padding at all: N = real tokens, versus B x S' padded.

Both return the outputs at the K positions as a (K, C) tensor plus the :class:`ResponseSlots` that put
K values back into a (B, T) tensor (0 where ``attention_mask`` is 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from verl.utils.torch_functional import trim_left_padding


@dataclass(frozen=True)
class ResponseSlots:
    """Where the K real response tokens sit in the (B, T) response block: ``rows[k], cols[k]``."""

    rows: torch.Tensor
    cols: torch.Tensor
    shape: tuple[int, int]

    def scatter(self, values_K: torch.Tensor) -> torch.Tensor:
        """(K,) values -> (B, T), 0 at padding (differentiable)."""
        out = values_K.new_zeros(self.shape)
        return out.index_put((self.rows, self.cols), values_K)


def padded_inputs(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
    """(model inputs without all-padding columns on both sides, kept response columns W).

    Dropping the leading columns that are padding in every row (:func:`trim_left_padding`) and the
    trailing response columns no row uses changes no real token's output (causal attention)."""
    t = batch["responses"].shape[1]
    used = batch["attention_mask"][:, -t:].any(0)
    width = int(used.nonzero().max()) + 1 if bool(used.any()) else 0
    inputs = trim_left_padding(batch, device)
    return {k: v[:, : v.shape[1] - (t - width)] for k, v in inputs.items()}, width


def packed_inputs(batch: dict[str, torch.Tensor], device: torch.device
                  ) -> tuple[dict[str, torch.Tensor], torch.Tensor, ResponseSlots]:
    """(model inputs of one packed row, the K packed positions predicting a response token, slots)."""
    attn = batch["attention_mask"].to(device).bool()
    rows_in_batch, width = attn.shape
    t = batch["responses"].shape[1]
    lengths = attn.sum(-1)
    if bool(((lengths - attn[:, -t:].sum(-1)) < 1).any()):
        raise ValueError("a sample has no prompt token, so its first response token has no position that "
                         "predicts it; every sample needs a non-empty prompt (attention_mask over the prompt)")
    input_ids = batch["input_ids"].to(device)[attn]
    starts = lengths.cumsum(0) - lengths
    position_ids = torch.arange(int(lengths.sum()), device=device) - starts.repeat_interleave(lengths)
    packed_index = (attn.flatten().long().cumsum(0) - 1).view(rows_in_batch, width)
    response = attn[:, -t:]
    rows, cols = response.nonzero(as_tuple=True)
    predict_at = packed_index[:, -t:][rows, cols] - 1  # the token before each response token
    inputs = {"input_ids": input_ids[None], "position_ids": position_ids[None]}
    return inputs, predict_at, ResponseSlots(rows, cols, (rows_in_batch, t))


def response_outputs(module: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device,
                     remove_padding: bool, causal_lm: bool,
                     extra_inputs: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None
                     ) -> tuple[torch.Tensor, ResponseSlots]:
    """``module``'s outputs (K, C) at the positions predicting the batch's K real response tokens.

    ``causal_lm``: the module takes ``logits_to_keep`` (only those positions are projected onto the
    vocabulary); otherwise (the critic's token head) every position is computed and the K are selected.
    ``extra_inputs`` completes the padded inputs (the visual mode's pixels and RoPE ids); packing is for
    text-only inputs, so the two do not combine.
    """
    if remove_padding:
        if extra_inputs is not None:
            raise ValueError("use_remove_padding=True packs text-only sequences; a vision model's inputs need "
                             "the padded layout: set actor_rollout_ref.model.use_remove_padding=False")
        inputs, predict_at, slots = packed_inputs(batch, device)
        extra = {"logits_to_keep": predict_at} if causal_lm else {}
        out = module(**inputs, use_cache=False, **extra).logits[0]
        return (out if causal_lm else out[predict_at]), slots
    inputs, width = padded_inputs(batch, device)
    if extra_inputs is not None:
        inputs = extra_inputs(inputs)
    extra = {"logits_to_keep": width + 1} if causal_lm else {}
    out = module(**inputs, use_cache=False, **extra).logits[:, -width - 1: -1]  # (B, W, C)
    mask = batch["attention_mask"][:, -batch["responses"].shape[1]:].to(device).bool()
    slots = ResponseSlots(*mask.nonzero(as_tuple=True), tuple(mask.shape))  # every col < W
    return out[slots.rows, slots.cols], slots
