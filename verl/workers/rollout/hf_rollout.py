"""Rollout with Hugging Face ``generate`` on an unsharded copy of the policy (CPU or GPU).

FSDP-sharded modules cannot generate independently per rank (every forward is a collective, and ranks
stop at different lengths), so each rank keeps a plain copy of the policy for sampling and receives the
actor's gathered weights after every update, the way a vLLM engine would.

Samples come from the policy being trained: softmax(logits / temperature), truncated only by the
configured top_p / top_k. ``from_pretrained`` attaches the checkpoint's ``generation_config.json``
(Qwen2.5-Instruct ships ``repetition_penalty: 1.05``, others ``top_k`` or ``no_repeat_ngram_size``) and
``generate`` applies every field of it that the call does not override, so the engine replaces it with
an empty ``GenerationConfig``: PPO's importance ratios assume the samples are on-policy.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig

from verl.protocol import DataProto
from verl.utils.torch_functional import trim_left_padding
from verl.workers.rollout.base import RolloutEngine


class HFRollout(RolloutEngine):
    def __init__(self, model: torch.nn.Module, device: torch.device, pad_token_id: int, eos_token_ids: list[int],
                 response_length: int, micro_batch_size: int, rank: int = 0):
        self.model = model.to(device).eval()
        self.model.generation_config = GenerationConfig()  # nothing but the sampling settings we pass
        self.device = device
        self.pad_token_id = pad_token_id
        self.eos_token_ids = eos_token_ids
        self.response_length = response_length
        self.micro_batch_size = micro_batch_size
        self.rank = rank

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state_dict)

    def _sampling_kwargs(self, meta: dict) -> dict:
        if not meta.get("do_sample", True) or meta.get("temperature", 1.0) == 0:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        top_k = int(meta.get("top_k", -1))
        return {"do_sample": True, "temperature": float(meta["temperature"]), "top_p": float(meta.get("top_p", 1.0)),
                "top_k": top_k if top_k > 0 else 0}

    @torch.no_grad()
    def generate(self, prompts: DataProto) -> DataProto:
        meta = prompts.meta_info
        # Seeded per call and rank: a resumed run samples exactly what an uninterrupted run would.
        torch.manual_seed(int(meta.get("seed", 0)) * 1009 + self.rank)
        kwargs = self._sampling_kwargs(meta)
        outs = []
        for micro in prompts.split(self.micro_batch_size):
            inputs = trim_left_padding(micro.batch, self.device, keys=("input_ids", "attention_mask"))
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            seq = self.model.generate(
                input_ids=ids, attention_mask=attn, max_new_tokens=self.response_length,
                eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id, use_cache=True, **kwargs,
            )
            outs.append(seq[:, ids.shape[1]:].cpu())
        return DataProto.from_dict(self._pack(outs, len(prompts)))

    def _pack(self, outs: list[torch.Tensor], batch_size: int) -> dict[str, torch.Tensor]:
        """Right-pad generated ids to the response length; mask = tokens up to and including the first EOS.

        The mask comes from EOS positions and generated lengths, not from pad ids, so a sampled token that
        happens to equal the pad id is still a real (trained-on) token.
        """
        width = self.response_length
        responses = torch.full((batch_size, width), self.pad_token_id, dtype=torch.long)
        generated = torch.zeros((batch_size, width), dtype=torch.bool)
        row = 0
        for out in outs:
            responses[row: row + out.shape[0], : out.shape[1]] = out
            generated[row: row + out.shape[0], : out.shape[1]] = True
            row += out.shape[0]
        is_eos = torch.isin(responses, torch.tensor(self.eos_token_ids)) & generated
        after_eos = (is_eos.long().cumsum(-1) - is_eos.long()) > 0
        mask = generated & ~after_eos
        responses = torch.where(mask, responses, torch.full_like(responses, self.pad_token_id))
        return {"responses": responses, "response_mask": mask.long()}
