"""Masked reductions and token-level helpers shared by the losses and the workers.

Shape suffixes: ``B`` samples, ``T`` response tokens, ``V`` vocabulary. A *mask* is a 0/1 tensor (bool,
int or float) of the same shape as the values it selects; values at masked-out positions never reach a
result, even when they are ``inf`` or ``nan`` (padding may hold anything).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

# Rows of a (rows, V) logits matrix processed at once by the log-softmax helpers. A chunk is upcast to
# float32, so peak extra memory is about ROW_CHUNK * V * 4 bytes instead of a full B*T*V float copy.
ROW_CHUNK = 1024


def _zero_masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``x`` with every masked-out position set to 0 (``where`` rather than ``x * mask`` so inf/nan vanish)."""
    if x.shape != mask.shape:
        raise ValueError(f"values of shape {tuple(x.shape)} and mask of shape {tuple(mask.shape)} differ; "
                         "pass a mask with exactly the shape of the values")
    return torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Sum of ``x`` over the positions where ``mask`` is 1 (over all dims when ``dim`` is None)."""
    kept = _zero_masked(x, mask)
    return kept.sum() if dim is None else kept.sum(dim=dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1; an empty selection gives 0."""
    count = mask.to(x.dtype).sum() if dim is None else mask.to(x.dtype).sum(dim=dim)
    return masked_sum(x, mask, dim) / count.clamp_min(1)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the selected entries of ``x`` (Bessel-corrected when ``unbiased``)."""
    count = int(mask.bool().sum())
    needed = 2 if unbiased else 1
    if count < needed:
        raise ValueError(f"masked_var needs at least {needed} selected value(s) but the mask selects {count}; "
                         "pass a larger batch or unbiased=False")
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return var * count / (count - 1) if unbiased else var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise the selected entries to unit variance (and zero mean when ``shift_mean``).

    Statistics use only the selected entries (unbiased variance, +1e-8 under the square root); the result
    is 0 at masked-out positions.
    """
    mean = masked_mean(x, mask)
    whitened = (x - mean) * torch.rsqrt(masked_var(x, mask) + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return _zero_masked(whitened, mask)


def _map_row_chunks(logits_BTV: torch.Tensor, fn: Callable[[torch.Tensor, slice], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn(rows_NV_float32, row_slice) -> values_N`` to chunks of the flattened (B*T, V) logits."""
    rows_NV = logits_BTV.reshape(-1, logits_BTV.shape[-1])
    pieces = [fn(rows_NV[start:start + ROW_CHUNK].float(), slice(start, start + ROW_CHUNK))
              for start in range(0, rows_NV.shape[0], ROW_CHUNK)]
    out_N = torch.cat(pieces) if pieces else rows_NV.new_zeros(0, dtype=torch.float32)
    return out_N.reshape(logits_BTV.shape[:-1])


def logprobs_from_logits(logits_BTV: torch.Tensor, labels_BT: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[label] per position, computed in float32 as ``logit[label] - logsumexp(logits)``."""
    if logits_BTV.shape[:-1] != labels_BT.shape:
        raise ValueError(f"logits of shape {tuple(logits_BTV.shape)} do not match labels of shape "
                         f"{tuple(labels_BT.shape)}; logits must be labels.shape + (vocab,)")
    labels_N = labels_BT.reshape(-1)

    def chunk_logp(rows: torch.Tensor, where: slice) -> torch.Tensor:
        picked = rows.gather(-1, labels_N[where].unsqueeze(-1)).squeeze(-1)
        return picked - torch.logsumexp(rows, dim=-1)

    return _map_row_chunks(logits_BTV, chunk_logp)


def entropy_from_logits(logits_BTV: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position: H = logsumexp(z) - sum_v p_v z_v, in float32."""

    def chunk_entropy(rows: torch.Tensor, _where: slice) -> torch.Tensor:
        return torch.logsumexp(rows, dim=-1) - (torch.softmax(rows, dim=-1) * rows).sum(-1)

    return _map_row_chunks(logits_BTV, chunk_entropy)


def response_mask_from_ids(response_ids_BT: torch.Tensor, eos_token_ids: list[int],
                           pad_token_id: int) -> torch.Tensor:
    """1 for generated tokens up to and including the first EOS, 0 after it.

    A response that stops without an EOS (length limit, stop string) and was right-padded ends before its
    first pad token. When the pad id is itself one of the EOS ids it counts as EOS (kept, then 0 after).
    Returns an int64 mask of the same shape.
    """
    if not eos_token_ids:
        raise ValueError("eos_token_ids is empty; pass the tokenizer's EOS id(s), e.g. [tokenizer.eos_token_id]")
    is_eos = torch.isin(response_ids_BT, torch.tensor(eos_token_ids, device=response_ids_BT.device))
    is_pad = (response_ids_BT == pad_token_id) & ~is_eos
    eos_seen_before = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    pad_seen = is_pad.long().cumsum(-1) > 0
    return (~(eos_seen_before | pad_seen)).long()


def last_valid_index(response_mask_BT: torch.Tensor) -> torch.Tensor:
    """Position of each row's last valid token; a row without any valid token is an error."""
    mask = response_mask_BT.bool()
    empty = (~mask.any(dim=-1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"samples {empty} have an empty response mask; every response needs at least one "
                         "valid token to carry its reward")
    positions_T = torch.arange(mask.shape[-1], device=mask.device)
    return torch.where(mask, positions_T, -1).argmax(dim=-1)


def place_reward_on_last_token(reward_B: torch.Tensor | Sequence[float],
                               response_mask_BT: torch.Tensor) -> torch.Tensor:
    """float32 (B, T) scores: each sample's reward on its last valid response token, 0 elsewhere.

    Shared by the reward manager (``agent_system``) and the invalid-action penalty (``core_algos``).
    """
    reward_B = torch.as_tensor(reward_B, dtype=torch.float32, device=response_mask_BT.device)
    if reward_B.shape != response_mask_BT.shape[:1]:
        raise ValueError(f"reward has shape {tuple(reward_B.shape)} but the batch has {response_mask_BT.shape[0]} "
                         "samples; pass one reward per sample")
    scores_BT = torch.zeros(response_mask_BT.shape, dtype=torch.float32, device=response_mask_BT.device)
    rows_B = torch.arange(len(reward_B), device=response_mask_BT.device)
    scores_BT[rows_B, last_valid_index(response_mask_BT)] = reward_B
    return scores_BT


def pad_2d_list_to_length(rows: list[list[int]], pad: int, length: int | None = None,
                          left_pad: bool = False) -> torch.Tensor:
    """Stack token-id rows into a (len(rows), length) LongTensor filled with ``pad``.

    ``length`` defaults to the longest row; rows are right-padded unless ``left_pad``.
    """
    longest = max((len(row) for row in rows), default=0)
    width = longest if length is None else length
    if longest > width:
        raise ValueError(f"a row has {longest} tokens but length={width}; raise length or truncate the rows")
    out = torch.full((len(rows), width), pad, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            start = width - len(row) if left_pad else 0
            out[i, start:start + len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def trim_left_padding(batch: dict[str, torch.Tensor], device: torch.device,
                      keys: tuple[str, ...] = ("input_ids", "attention_mask", "position_ids")) -> dict[str, torch.Tensor]:
    """``batch[keys]`` without the leading columns that are padding in every row, moved to ``device``.

    Prompts are left-padded to ``data.max_prompt_length``; dropping the all-padding columns gives the
    same model outputs for a fraction of the compute and memory.
    """
    mask = batch["attention_mask"]
    first = int(mask.any(0).int().argmax()) if mask.any() else 0
    return {k: batch[k][:, first:].to(device) for k in keys}
