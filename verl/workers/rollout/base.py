"""The rollout-engine contract: prompts in, sampled response token ids out, weights pushed in.

``generate(prompts)`` takes a :class:`DataProto` with left-padded ``input_ids``/``attention_mask``
(B, P) and ``meta_info`` sampling settings (``do_sample``, ``temperature``, ``top_p``, ``top_k``,
``seed``) and returns ``responses`` (B, T) right-padded with the pad id plus ``response_mask`` (1 up to
and including the first EOS). The ids are exactly the sampled tokens (token-in/token-out): the trainer
never re-tokenises decoded text.

``load_weights(weights)`` receives the policy as a *stream* of ``(name, tensor)`` pairs: every parameter
once, under its Hugging Face name (``named_parameters()`` of the trained module, so a tied parameter comes
once, under its first name, e.g. ``model.embed_tokens.weight`` and never ``lm_head.weight``), as a full
(unsharded) tensor already in the engine's dtype on the training device. The engine copies each tensor
into place and must not keep a reference: the producer (:mod:`verl.workers.weight_sync`) frees it before
gathering the next, which is what bounds the memory of a sync. It is called once to fill the engine's
empty model at start-up and after every update.

Engines sample from softmax(logits / temperature) truncated by ``top_p`` / ``top_k`` and nothing else: no
field of the model's ``generation_config.json`` (repetition penalty, n-gram bans, ...) may reach sampling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable

import torch

from verl.protocol import DataProto


class RolloutEngine(ABC):
    @abstractmethod
    def generate(self, prompts: DataProto) -> DataProto: ...

    @abstractmethod
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None: ...
