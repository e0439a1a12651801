"""Rollout with a Hugging Face model on an unsharded copy of the policy (CPU or GPU).

FSDP-sharded modules cannot generate independently per rank (every forward is a collective, and ranks
stop at different lengths), so each rank keeps a plain copy of the policy for sampling and receives the
actor's weights after every update as a stream of full tensors (:mod:`verl.workers.weight_sync`), the way a
vLLM engine would.

A text policy decodes with :func:`verl.workers.rollout.sampler.sample`, which samples as ``generate``
does but drops each row from the batch once it ends (1.5–1.8× more decoding steps per second than
``generate`` on the echo benchmark's 16 × ≤ 64 tokens, SmolLM2 on 2 CPU cores). Samples come from the
policy being trained: softmax(logits / temperature), truncated only by the configured top_p / top_k.
``from_pretrained`` attaches the checkpoint's ``generation_config.json`` (Qwen2.5-Instruct ships
``repetition_penalty: 1.05``, others ``top_k`` or ``no_repeat_ngram_size``) and ``generate`` applies every
field of it that the call does not override, so the engine replaces it with an empty
``GenerationConfig``: PPO's importance ratios assume the samples are on-policy.

Prompts with a history image (visual mode) carry it in ``non_tensor_batch["images"]``; the engine turns
each micro-batch's images into ``pixel_values`` / ``image_grid_thw`` (:mod:`verl.utils.vision`), and a
vision-language policy decodes with ``generate``, which computes the multimodal RoPE ids itself. With
``meta_info["return_log_probs"]`` the engine also returns ``rollout_log_probs`` (B, T), the
log-probability of each sampled token as generated
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
from verl.workers.rollout.sampler import Sampling, sample


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

    @staticmethod
    def _sampling(meta: dict) -> Sampling:
        if not meta.get("do_sample", True) or meta.get("temperature", 1.0) == 0:
            return Sampling(greedy=True)
        return Sampling(temperature=float(meta["temperature"]), top_p=float(meta.get("top_p", 1.0)),
                        top_k=max(int(meta.get("top_k", -1)), 0))

    @torch.no_grad()
    def generate(self, prompts: DataProto) -> DataProto:
        meta = prompts.meta_info
        # Seeded per call and rank: a resumed run samples exactly what an uninterrupted run would.
        torch.manual_seed(int(meta.get("seed", 0)) * 1009 + self.rank)
        sampling = self._sampling(meta)
        want_logp = bool(meta.get("return_log_probs", False))  # opt-in: the parity tests read them
        rows, logps = [], []
        for micro in prompts.split(self.micro_batch_size):
            inputs = trim_left_padding(micro.batch, self.device, keys=("input_ids", "attention_mask"))
            ids, attn = inputs["input_ids"], inputs["attention_mask"]
            kwargs_mm = multimodal_inputs(self.vision, micro.non_tensor_batch.get("images"), ids)
            if self.vision is not None:  # a vision-language policy: its RoPE ids are generate's to build
                out, lp = self._generate_with_vision(ids, attn, kwargs_mm, sampling, want_logp)
            else:
                out, lp = sample(self.model, ids, attn, self.response_length, self.eos_token_ids, sampling, want_logp)
            rows += [row.cpu() for row in out]
            if want_logp:
                logps += [row.cpu() for row in lp]
        packed = pack_responses(rows, self.response_length, self.pad_token_id, self.eos_token_ids)
        if want_logp:
            packed["rollout_log_probs"] = torch.zeros(packed["responses"].shape)
            for i, lp in enumerate(logps):
                packed["rollout_log_probs"][i, : len(lp)] = lp
            packed["rollout_log_probs"] *= packed["response_mask"]
        return DataProto.from_dict(packed)

    def _generate_with_vision(self, ids: torch.Tensor, attn: torch.Tensor, kwargs_mm: dict, sampling: Sampling,
                             want_logp: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A vision-language policy decodes with ``generate``, which builds the multimodal RoPE ids for
        every step itself (finished rows stay in the batch, padded)."""
        kwargs = ({"do_sample": False, "temperature": None, "top_p": None, "top_k": None} if sampling.greedy else
                  {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p,
                   "top_k": sampling.top_k})
        gen = self.model.generate(
            input_ids=ids, attention_mask=attn, max_new_tokens=self.response_length, **kwargs_mm,
            eos_token_id=self.eos_token_ids, pad_token_id=self.pad_token_id, use_cache=True, **kwargs,
            return_dict_in_generate=True, output_logits=want_logp,
        )
        out = gen.sequences[:, ids.shape[1]:]
        temperature = 1.0 if sampling.greedy else sampling.temperature
        return out, (self._sampled_log_probs(gen.logits, out, temperature) if want_logp else None)

    @staticmethod
    def _sampled_log_probs(logits: tuple[torch.Tensor, ...], tokens: torch.Tensor, temperature: float) -> torch.Tensor:
        """log p(sampled token) at each generated position, from the raw logits / temperature."""
        steps = torch.stack(logits, dim=1).float().cpu() / (temperature or 1.0)
        return torch.log_softmax(steps, -1).gather(-1, tokens[:, : steps.shape[1], None]).squeeze(-1)
