"""The GPU check: measures what only a CUDA machine can show, prints one JSON object.

    bash benchmarks/device_check.sh                # on a single-GPU machine (see the .sh for the wheels)
    python -m benchmarks.device_check --cpu-dry-run  # every step on CPU with small sizes

Steps (each reports its seconds; a failing step reports its error and the others still run):

* ``models``: random-initialised Qwen2.5-0.5B and Qwen2.5-3B shaped folders written locally
  (``benchmarks/reference_models.py``, bf16 weights, the tiny model's tokenizer); no weights travel.
* per model, in the real actor role on one rank (``ActorRolloutRefWorker``: rank-0 read, FSDP2 on NCCL,
  bf16 mixed precision, gradient checkpointing as the reference scripts):
  ``update``: actor forward+backward+step tokens/s and MFU at the reference micro-batch and lengths
  (model FLOPs ``6N + 12 L h S`` per token, PaLM appendix B, against the GPU's dense bf16 peak);
  ``rollout``: the ``hf`` engine's generated tokens/s against bare ``model.generate`` on the same prompts;
  ``sync_s``: seconds of one streamed weight sync; ``memory``: peak GPU memory against the memory plan.
* ``trainer``: a 2-step training run on the echo env with the tiny model through the real entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import trainer_step
from benchmarks.reference_models import write_model_folder
from verl.protocol import DataProto
from verl.single_controller import RankPool
from verl.single_controller.worker import peak_memory, reset_peak_memory
from verl.trainer.config import compose_config
from verl.utils.fs import cache_dir
from verl.utils.memory_plan import plan_for_run
from verl.utils.ray_utils import init_ray
from verl.utils.tiny_model import build_tiny_model
from verl.workers.actor import layout_mini_batches
from verl.workers.fsdp_workers import ActorRolloutRefWorker
from verl.workers.rollout.base import pack_responses

H200_BF16_DENSE_FLOPS = 989e12  # NVIDIA H200 SXM datasheet, dense bf16 tensor-core peak
GIB = 2**30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    _sync(device)
    started = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - started, out


class DeviceProbe(ActorRolloutRefWorker):
    """The actor role plus timed calls of its parts (runs inside the rank process)."""

    def timed_update(self, data: DataProto) -> float:
        seconds, _ = _timed(self.device, lambda: self.actor.update_policy(data, 1.0))
        self.actor.optimizer.zero_grad(set_to_none=True)
        return seconds

    def timed_sync(self) -> float:
        return _timed(self.device, self.sync_rollout_weights)[0]

    def timed_generate(self, prompts: DataProto, bare: bool) -> tuple[float, int]:
        if not bare:
            seconds, out = _timed(self.device, lambda: self.rollout.generate(prompts))
            return seconds, int(out.batch["response_mask"].sum())
        ids = prompts.batch["input_ids"].to(self.device)
        mask = prompts.batch["attention_mask"].to(self.device)
        kwargs = dict(max_new_tokens=self.cfg.data.max_response_length, do_sample=True, temperature=1.0, top_p=1.0,
                      top_k=0, eos_token_id=self.rollout.eos_token_ids, pad_token_id=self.rollout.pad_token_id)
        with torch.no_grad():
            seconds, out = _timed(self.device, lambda: self.rollout.model.generate(
                input_ids=ids, attention_mask=mask, **kwargs))
        packed = pack_responses(list(out[:, ids.shape[1]:].cpu()), self.cfg.data.max_response_length,
                                self.rollout.pad_token_id, self.rollout.eos_token_ids)
        return seconds, int(packed["response_mask"].sum())

    def memory(self) -> dict[str, int]:
        peaks = peak_memory(self.device)
        if self.device.type == "cuda":
            peaks["cuda_reserved"] = torch.cuda.max_memory_reserved(self.device)
        return peaks

    def reset_memory(self) -> None:
        reset_peak_memory(self.device)


def synthetic_batch(n: int, prompt: int, response: int, vocab: int) -> DataProto:
    """Full-length prompts and responses of random ids (no padding: the configured lengths exactly)."""
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(3, vocab, (n, prompt), generator=g)
    responses = torch.randint(3, vocab, (n, response), generator=g)
    ones = torch.ones(n, prompt + response, dtype=torch.long)
    return DataProto.from_dict({
        "prompts": prompts, "responses": responses, "response_mask": torch.ones(n, response, dtype=torch.long),
        "input_ids": torch.cat([prompts, responses], 1), "attention_mask": ones,
        "position_ids": torch.arange(prompt + response).expand(n, -1).clone(),
        "old_log_probs": torch.zeros(n, response), "advantages": torch.randn(n, response, generator=g),
    }, meta_info={"temperature": 1.0})


def model_flops_per_token(params: int, layers: int, hidden: int, seq: int) -> float:
    """Training FLOPs per token: 6N for the matrix multiplies plus 12 L h S for attention (PaLM, app. B)."""
    return 6 * params + 12 * layers * hidden * seq


def check_model(model_dir: str, sizes: dict[str, int], device: str) -> dict[str, Any]:
    from omegaconf import OmegaConf
    from transformers import AutoConfig

    micro, prompt, response = sizes["micro_batch"], sizes["prompt"], sizes["response"]
    cfg = compose_config([f"actor_rollout_ref.model.path={model_dir}", f"trainer.device={device}",
                          f"data.max_prompt_length={prompt}", f"data.max_response_length={response}",
                          f"actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu={micro}",
                          f"actor_rollout_ref.rollout.micro_batch_size={sizes['rollout_batch']}",
                          "actor_rollout_ref.model.enable_gradient_checkpointing=True"])
    config = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, Any] = {}
    started = time.perf_counter()
    pool = RankPool({"actor": (DeviceProbe, dict(config=config, model_path=model_dir, total_training_steps=10,
                                                 with_ref=False))}, 1, device)
    try:
        actor = pool.group("actor")
        actor.execute_all("init_model")
        out["init_s"] = round(time.perf_counter() - started, 1)
        hf = AutoConfig.from_pretrained(model_dir)
        vocab = min(hf.vocab_size, 1024)  # the tokenizer's ids (a prefix of the model's vocabulary)
        batch = synthetic_batch(micro, prompt, response, vocab)
        batch.meta_info["mini_batch_sizes"] = [micro]
        (data,) = layout_mini_batches(batch, 1, micro)
        actor.execute_all("reset_memory")
        actor.execute_all("timed_update", data)  # warm-up (allocations, kernels)
        update_s = [actor.execute_all("timed_update", data)[0] for _ in range(sizes["repeats"])]
        sync_s = [actor.execute_all("timed_sync")[0] for _ in range(sizes["repeats"])]
        plan = plan_for_run(cfg, model_dir, None)
        params = plan["policy"]["params"]
        tokens = micro * (prompt + response)
        tps = tokens / min(update_s)
        out["update"] = {"tokens": tokens, "seconds": [round(s, 3) for s in update_s], "tokens_per_s": round(tps),
                         "mfu": round(tps * model_flops_per_token(params, hf.num_hidden_layers, hf.hidden_size,
                                                                   prompt + response) / H200_BF16_DENSE_FLOPS, 4)}
        out["sync_s"] = [round(s, 3) for s in sync_s]
        ids = synthetic_batch(sizes["rollout_batch"], prompt, 1, vocab).batch["prompts"]
        prompts = DataProto.from_dict({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, meta_info={
            "do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "seed": 0})
        engine = actor.execute_all("timed_generate", prompts, False)[0]
        bare = actor.execute_all("timed_generate", prompts, True)[0]
        out["rollout"] = {"prompts": sizes["rollout_batch"], "prompt_len": prompt, "max_new_tokens": response,
                          "engine_tokens_per_s": round(engine[1] / engine[0], 1),
                          "bare_generate_tokens_per_s": round(bare[1] / bare[0], 1),
                          "engine_over_bare": round((engine[1] / engine[0]) / (bare[1] / bare[0]), 3)}
        measured = actor.execute_all("memory")[0]
        key = "cuda_allocated" if device == "cuda" else "rss"
        out["memory"] = {"measured_peak_gib": round(measured[key] / GIB, 2),
                         "plan_total_gib": round(plan["total"] / GIB, 2),
                         "plan_without_runtime_gib": round((plan["total"] - plan["per_rank"]["runtime"]) / GIB, 2),
                         "plan_phases_gib": {k: round(v / GIB, 2) for k, v in plan["phases"].items()},
                         **({"cuda_reserved_peak_gib": round(measured["cuda_reserved"] / GIB, 2)}
                            if "cuda_reserved" in measured else {})}
    finally:
        pool.shutdown()
    out["seconds"] = round(time.perf_counter() - started, 1)
    return out


def check_trainer(device: str, work: Path) -> dict[str, Any]:
    """Two training steps on the echo env with the tiny model, through the trainer's own entry point."""
    tiny = str(build_tiny_model(cache_dir() / "models" / "tiny-qwen2-device-check"))
    started = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        measured = trainer_step.summarize_rows(trainer_step.run_rows(
            tiny, ranks=1, steps=2, group=4, batch=4, work=work, extra=[f"trainer.device={device}"]))
    return {**measured, "seconds": round(time.perf_counter() - started, 1)}


def check_reference_model(size: str, work: Path, device: str, dry_run: bool) -> dict[str, Any]:
    """A Qwen2.5-``size`` shaped model with random weights (the tiny model in a dry run), checked in the actor role."""
    started = time.perf_counter()
    folder = (str(build_tiny_model(cache_dir() / "models" / "tiny-qwen2-device-check")) if dry_run
              else str(write_model_folder(size, work / f"qwen2.5-{size}", weights=True, device=device)))
    write_s = round(time.perf_counter() - started, 1)
    with contextlib.redirect_stdout(sys.stderr):
        return {"write_s": write_s, **check_model(folder, DRY if dry_run else FULL, device)}


FULL = {"micro_batch": 32, "prompt": 2048, "response": 512, "rollout_batch": 64, "repeats": 2}
DRY = {"micro_batch": 2, "prompt": 32, "response": 8, "rollout_batch": 4, "repeats": 1}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-dry-run", action="store_true", help="every step on CPU with small sizes")
    parser.add_argument("--models", nargs="+", default=["0.5b", "3b"])
    parser.add_argument("--partial", type=Path, default=None,
                        help="rewrite the result so far to this file after every step (read if the run is cut short)")
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu_dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; use --cpu-dry-run")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    init_ray(log_to_driver=False)
    result: dict[str, Any] = {"mode": "cpu-dry-run" if args.cpu_dry_run else "cuda", "torch": torch.__version__}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        result.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / GIB, 1))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        steps = [("trainer", lambda: check_trainer(device, Path(work)))]  # first: the whole CUDA path, cheapest
        steps += [(f"qwen2.5-{size}", lambda size=size: check_reference_model(size, Path(work), device,
                                                                             args.cpu_dry_run)) for size in args.models]
        for name, step in steps:
            try:
                result[name] = step()
            except Exception as err:  # report and go on: one JSON object with every step
                result[name] = {"error": f"{type(err).__name__}: {err}"}
            result["seconds"] = round(time.perf_counter() - started, 1)
            if args.partial:
                args.partial.write_text(json.dumps(result))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
