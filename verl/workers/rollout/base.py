"""The rollout-engine contract: prompts in, sampled response token ids out, weights pushed in.

``generate(prompts)`` takes a :class:`DataProto` with left-padded ``input_ids``/``attention_mask``
(B, P) and ``meta_info`` sampling settings (``do_sample``, ``temperature``, ``top_p``, ``top_k``,
``seed``) and returns ``responses`` (B, T) right-padded with the pad id plus ``response_mask`` (1 up to
and including the first EOS). The ids are exactly the sampled tokens (token-in/token-out): the trainer
never re-tokenises decoded text. ``load_weights`` receives the actor's full state dict after every update.
Engines sample from softmax(logits / temperature) truncated by ``top_p`` / ``top_k`` and nothing else: no
field of the model's ``generation_config.json`` (repetition penalty, n-gram bans, ...) may reach sampling.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from verl.protocol import DataProto


class RolloutEngine(ABC):
    @abstractmethod
    def generate(self, prompts: DataProto) -> DataProto: ...

    @abstractmethod
    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None: ...
