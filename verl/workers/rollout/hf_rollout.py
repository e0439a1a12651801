"""Rollout with Hugging Face ``generate`` on an unsharded copy of the policy (CPU or GPU).

FSDP-sharded modules cannot generate independently per rank (every forward is a collective, and ranks
stop at different lengths), so each rank keeps a plain copy of the policy for sampling and receives the
actor's gathered weights after every update, the way a vLLM engine would.

Samples come from the policy being trained: softmax(logits / temperature), truncated only by the
configured top_p / top_k. ``from_pretrained`` attaches the checkpoint's ``generation_config.json``
(Qwen2.5-Instruct ships ``repetition_penalty: 1.05``, others ``top_k`` or ``no_repeat_ngram_size``) and
``generate`` applies every field of it that the call does not override, so the engine replaces it with
an empty ``GenerationConfig``: PPO's importance ratios assume the samples are on-policy.

Prompts with a history image (visual mode) carry it in ``non_tensor_batch["images"]``; the engine turns
each micro-batch's images into ``pixel_values`` / ``image_grid_thw`` (:mod:`verl.utils.vision`) and
``generate`` computes the multimodal RoPE ids itself. With ``meta_info["return_log_probs"]`` the engine
also returns ``rollout_log_probs`` (B, T), the log-probability of each sampled token as generated
(the trainer's recomputation must match it; used by the parity tests).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import GenerationConfig

from verl.protocol import DataProto
from verl.utils.torch_functional import trim_left_padding
from verl.utils.vision import VisionInputs, multimodal_inputs
from verl.workers.rollout.base import RolloutEngine, pack_responses


class HFRollout(RolloutEngine):
    def __init__(self, model: torch.nn.Module, device: torch.device, pad_token_id: int, eos_token_ids: list[int],
                 response_length: int, micro_batch_size: int, rank: int = 0, vision: VisionInputs | None = None):
        self.model = model.to(device).eval()
        self.model.generation_config = GenerationConfig()  # nothing but the sampling settings we pass
        self.device = device
        self.pad_token_id = pad_token_id
        self.eos_token_ids = eos_token_ids
        self.response_length = response_length
        self.micro_batch_size = micro_batch_size
        self.rank = rank
        self.vision = vision

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
        want_logp = bool(meta.get("return_log_probs", False))  # opt-in: keeps every step's logits (tests)
        outs, logps = [], []
        for micro in prompts.split(self.micro_batch_size):
            inputs = trim_left_padding(micro.batch, self.device, keys=("input_ids", "attention_mask"))
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            kwargs_mm = multimodal_inputs(self.vision, micro.non_tensor_batch.get("images"), ids)
            gen = self.model.generate(
                input_ids=ids, attention_mask=attn, max_new_tokens=self.response_length, **kwargs_mm,
                eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id, use_cache=True, **kwargs,
                return_dict_in_generate=True, output_logits=want_logp,
            )
            outs.append(gen.sequences[:, ids.shape[1]:].cpu())
            if want_logp:
                logps.append(self._sampled_log_probs(gen.logits, outs[-1], float(meta.get("temperature", 1.0))))
        rows = [row for out in outs for row in out]
        packed = pack_responses(rows, self.response_length, self.pad_token_id, self.eos_token_ids)
        if want_logp:
            packed["rollout_log_probs"] = torch.zeros(packed["responses"].shape)
            row = 0
            for lp in logps:
                packed["rollout_log_probs"][row: row + lp.shape[0], : lp.shape[1]] = lp
                row += lp.shape[0]
            packed["rollout_log_probs"] *= packed["response_mask"]
        return DataProto.from_dict(packed)

    @staticmethod
    def _sampled_log_probs(logits: tuple[torch.Tensor, ...], tokens: torch.Tensor, temperature: float) -> torch.Tensor:
        """log p(sampled token) at each generated position, from the raw logits / temperature."""
        steps = torch.stack(logits, dim=1).float().cpu() / (temperature or 1.0)
        return torch.log_softmax(steps, -1).gather(-1, tokens[:, : steps.shape[1], None]).squeeze(-1)
