"""Rollout with Hugging Face ``generate`` on an unsharded copy of the policy (CPU or GPU).

FSDP-sharded modules cannot generate independently per rank (every forward is a collective, and ranks
stop at different lengths), so each rank keeps a plain copy of the policy for sampling and receives the
actor's weights after every update as a stream of full tensors (:mod:`verl.workers.weight_sync`), the way a
vLLM engine would.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from verl.protocol import DataProto
from verl.utils.torch_functional import trim_left_padding
from verl.workers.rollout.base import RolloutEngine


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

    @torch.no_grad()
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy each streamed tensor into the parameter of that name. Strict: an unknown or repeated name,
        a wrong shape or dtype, or a parameter that never arrives is an error (a silent mismatch would
        sample from a policy that is not the one being trained)."""
        params = dict(self.model.named_parameters())  # tied parameters appear once, under the first name
        seen: set[str] = set()
        for name, tensor in weights:
            param = params.get(name)
            if param is None or name in seen:
                problem = "arrived twice" if name in seen else "is not a parameter of the rollout model"
                raise ValueError(f"weight sync: {name!r} {problem} (tied weights are sent once, under the first "
                                 f"name); the trainer and rollout models differ")
            if param.shape != tensor.shape or param.dtype != tensor.dtype:
                raise ValueError(f"weight sync: {name!r} arrived as {tuple(tensor.shape)} {tensor.dtype}, the "
                                 f"rollout model holds {tuple(param.shape)} {param.dtype}")
            param.copy_(tensor)
            seen.add(name)
        if missing := sorted(params.keys() - seen):
            raise ValueError(f"weight sync: {len(missing)} parameters never arrived, e.g. {missing[:3]}")

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
