"""Rollout with Hugging Face ``generate`` on an unsharded copy of the policy (CPU or GPU).

FSDP-sharded modules cannot generate independently per rank (every forward is a collective, and ranks
stop at different lengths), so each rank keeps a plain copy of the policy for sampling and receives the
actor's gathered weights after every update, the way a vLLM engine would.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from verl.protocol import DataProto
from verl.utils.torch_functional import trim_left_padding
from verl.workers.rollout.base import RolloutEngine, pack_responses


class HFRollout(RolloutEngine):
    def __init__(self, model: torch.nn.Module, device: torch.device, pad_token_id: int, eos_token_ids: list[int],
                 response_length: int, micro_batch_size: int, rank: int = 0):
        self.model = model.to(device).eval()
        self.device = device
        self.pad_token_id = pad_token_id
        self.eos_token_ids = eos_token_ids
        self.response_length = response_length
        self.micro_batch_size = micro_batch_size
        self.rank = rank

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        # Strict: a missing or unexpected name means the actor and this copy disagree; fail, don't drift.
        self.model.load_state_dict(dict(weights))

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
        rows = [row for out in outs for row in out]
        return DataProto.from_dict(pack_responses(rows, self.response_length, self.pad_token_id, self.eos_token_ids))
