"""The rollout-engine contract: prompts in, sampled response token ids out, weights pushed in.

``generate(prompts)`` takes a :class:`DataProto` with left-padded ``input_ids``/``attention_mask``
(B, P) and ``meta_info`` sampling settings (``do_sample``, ``temperature``, ``top_p``, ``top_k``,
``seed``) and returns ``responses`` (B, T) right-padded with the pad id plus ``response_mask`` (1 up to
and including the first EOS). The ids are exactly the sampled tokens (token-in/token-out): the trainer
never re-tokenises decoded text. ``load_weights`` receives the actor's weights after every update as a
stream of ``(Hugging Face parameter name, full unsharded tensor in the engine dtype)`` pairs; each tensor
may be freed once consumed, so an engine never needs a second full copy of the model.
Engines sample from softmax(logits / temperature) truncated by ``top_p`` / ``top_k`` and nothing else: no
field of the model's ``generation_config.json`` (repetition penalty, n-gram bans, ...) may reach sampling.
Prompts may carry a history image per row in ``non_tensor_batch["images"]`` (visual mode); only the ``hf``
engine reads it, and the config check rejects visual mode with any other engine. ``rollout_log_probs``
(B, T), each sampled token's log-probability, comes back when ``meta_info["return_log_probs"]`` is set
(the ``vllm`` engine returns it always, at no cost).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence

import torch

from verl.protocol import DataProto


class RolloutEngine(ABC):
    @abstractmethod
    def generate(self, prompts: DataProto) -> DataProto: ...

    @abstractmethod
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    def release_memory(self) -> None:
        """Free what the engine holds between rollouts (e.g. a KV cache) while the trainer updates the
        policy; the next ``load_weights`` or ``generate`` takes it back. Engines that hold nothing extra
        between calls keep this default."""


def pack_responses(rows: Sequence[torch.Tensor], width: int, pad_token_id: int,
                   eos_token_ids: list[int]) -> dict[str, torch.Tensor]:
    """Right-pad generated id rows to ``width``; mask = tokens up to and including the first EOS.

    ``rows[i]`` holds what was generated for prompt i (an engine may pad a finished row after its EOS).
    The mask comes from EOS positions and generated lengths, not from pad ids, so a sampled token that
    happens to equal the pad id is still a real (trained-on) token.
    """
    responses = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    generated = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        responses[i, : len(row)] = row
        generated[i, : len(row)] = True
    is_eos = torch.isin(responses, torch.tensor(eos_token_ids)) & generated
    after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
    mask = generated & ~after_eos
    responses = torch.where(mask, responses, torch.full_like(responses, pad_token_id))
    return {"responses": responses, "response_mask": mask.long()}
