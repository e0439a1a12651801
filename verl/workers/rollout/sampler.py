"""Token-by-token sampling that drops finished rows: the HF engine's decoding loop for text prompts.

``model.generate`` keeps every row of a batch in every forward until the longest response ends (a
finished row is fed pad tokens), so a batch whose responses end at 10–30 tokens while one runs to
``max_new_tokens`` pays for the whole batch at every step. This loop samples exactly as ``generate``
does — softmax over the raw logits processed by the temperature, top-k then top-p warpers (transformers'
own ``LogitsProcessor`` classes, in ``generate``'s order), ``argmax`` when greedy, a row ends at its
first EOS id or at ``max_new_tokens`` — but after every step removes the rows that ended from the batch,
the KV cache (``Cache.reorder_cache`` with the indices kept) and the attention mask, so each forward runs
only the rows still generating (vLLM's continuous batching without refilling). Prompts are left-padded;
position ids count real tokens (``cumsum(mask) - 1``, as ``generate`` builds them), so a row's tokens and
log-probabilities do not depend on which other rows share its batch.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper


@dataclass(frozen=True)
class Sampling:
    """The sampling settings of one call: ``greedy`` ignores the other three (``generate``'s
    ``do_sample=False``); ``top_k`` 0 and ``top_p`` 1.0 leave the distribution untruncated."""

    greedy: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def warpers(self) -> LogitsProcessorList:
        """The logits processors ``generate`` applies for these settings, in its order."""
        steps = LogitsProcessorList()
        if self.greedy:
            return steps
        if self.temperature != 1.0:
            steps.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k > 0:
            steps.append(TopKLogitsWarper(top_k=self.top_k, min_tokens_to_keep=1))
        if self.top_p < 1.0:
            steps.append(TopPLogitsWarper(top_p=self.top_p, min_tokens_to_keep=1))
        return steps


def _cache_kwarg(model: torch.nn.Module) -> str:
    """The forward's name for the KV cache: ``cache`` from transformers 5.2x, ``past_key_values`` before."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


@torch.no_grad()
def sample(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           eos_token_ids: list[int], sampling: Sampling,
           with_log_probs: bool = False) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Generate up to ``max_new_tokens`` tokens for each left-padded prompt row.

    Returns each row's generated ids (ending with its EOS when it produced one) and, with
    ``with_log_probs``, each token's log-probability under softmax(raw logits / temperature), the
    distribution the trainer recomputes (before top-k / top-p truncation, as ``generate``'s ``logits``).
    """
    batch = input_ids.shape[0]
    cache_kwarg = _cache_kwarg(model)
    warpers = sampling.warpers()
    eos = torch.tensor(eos_token_ids, dtype=torch.long, device=input_ids.device)
    temperature = 1.0 if sampling.greedy else (sampling.temperature or 1.0)
    position_ids = attention_mask.long().cumsum(-1) - 1
    position_ids.masked_fill_(attention_mask == 0, 1)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                logits_to_keep=1)
    rows = torch.arange(batch, device=input_ids.device)  # the prompt row of each row still generating
    mask = attention_mask
    next_position = position_ids[:, -1:] + 1
    generated = input_ids.new_zeros((batch, max_new_tokens))
    log_probs = torch.zeros((batch, max_new_tokens), device=input_ids.device)
    lengths = input_ids.new_zeros(batch)
    for step in range(max_new_tokens):
        logits = out.logits[:, -1, :].float()
        scores = warpers(None, logits)
        token = scores.argmax(-1) if sampling.greedy else torch.multinomial(scores.softmax(-1), 1).squeeze(1)
        generated[rows, step] = token
        lengths[rows] = step + 1
        if with_log_probs:
            log_probs[rows, step] = torch.log_softmax(logits / temperature, -1).gather(-1, token[:, None]).squeeze(1)
        going = ~torch.isin(token, eos)
        if step == max_new_tokens - 1 or not going.any():
            break
        cache = out.cache if cache_kwarg == "cache" else out.past_key_values
        if not going.all():
            keep = going.nonzero().squeeze(1)
            cache.reorder_cache(keep)
            rows, mask, next_position, token = rows[keep], mask[keep], next_position[keep], token[keep]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
        out = model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position, use_cache=True,
                    **{cache_kwarg: cache})
        next_position = next_position + 1
    ids = [generated[i, :n] for i, n in enumerate(lengths.tolist())]
    return ids, ([log_probs[i, :n] for i, n in enumerate(lengths.tolist())] if with_log_probs else None)
