"""Peak memory of start-up and weight sync (before/after the streamed sync), and the memory plan vs measured.

    python benchmarks/memory.py [--model smollm2-135m-instruct] [--ranks 1 2] [--skip_plan]

Prints one JSON object. Per world size, in fresh rank processes each (peaks are Linux VmHWM, reset before
each phase, so one phase's peak is not hidden by an earlier one):

* ``startup``: peak RSS per rank while the actor role is built, minus the RSS before, for the model's
  fp32 checkpoint and for a bf16 copy of it (how Qwen2.5 ships). ``before`` is the
  previous code path kept here for comparison (every rank ``from_pretrained`` in fp32, ``fully_shard`` on the
  loaded model, then a second ``from_pretrained`` for the rollout copy); ``after`` is
  ``ActorRolloutRefWorker.init_model`` (rank 0 reads, shards are broadcast, the rollout copy is filled by
  the streamed sync).
* ``sync``: peak RSS of one weight sync above the RSS before it. ``before`` = the previous path
  (``get_model_state_dict(full_state_dict=True)`` on every rank, then ``load_state_dict``); ``after`` =
  ``sync_rollout_weights`` (one all-gathered parameter at a time).
* ``plan``: a one-step echo-env training run with the real trainer; per rank the measured peak RSS of the
  whole run against :mod:`verl.utils.memory_plan`'s total for the same config (ratio = measured / plan).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from benchmarks.trainer_step import echo_overrides, echo_slots
from verl.single_controller import RankPool
from verl.single_controller.worker import peak_memory, reset_peak_memory
from verl.trainer.config import compose_config
from verl.trainer.main_ppo import Run
from verl.utils.memory_plan import plan_for_run
from verl.utils.model import load_causal_lm, load_tokenizer, resolve_model_path
from verl.utils.ray_utils import init_ray
from verl.workers.fsdp_utils import build_optimizer
from verl.workers.fsdp_workers import TRAIN_DTYPE, ActorRolloutRefWorker
from verl.workers.rollout.hf_rollout import HFRollout

MB = 2**20


def _current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")




class MeasuredActor(ActorRolloutRefWorker):
    """The actor role plus the previous start-up and sync paths, each measured as a peak above the RSS before."""

    def _measure(self, fn) -> int:
        reset_peak_memory(self.device)
        before = _current_rss()
        fn()
        return peak_memory(self.device)["rss"] - before

    def startup(self, path: str) -> int:
        return self._measure(self.init_model if path == "after" else self._init_model_before)

    def sync(self, path: str) -> int:
        return self._measure(self.sync_rollout_weights if path == "after" else self._sync_before)

    def _init_model_before(self) -> None:
        """The start-up of the previous release: a full fp32 load on every rank, sharded in place, and a
        second full load for the rollout copy (only what memory depends on: no ref, no scheduler)."""
        self.tokenizer = load_tokenizer(self.model_path)
        module = load_causal_lm(self.model_path, TRAIN_DTYPE)
        mesh = init_device_mesh(self.device.type, (self.world_size,))
        for layer in [m for m in module.modules() if type(m).__name__.endswith("DecoderLayer")]:
            fully_shard(layer, mesh=mesh)
        fully_shard(module, mesh=mesh)
        self.actor_module, self.optimizer = module, build_optimizer(module, self.cfg.actor_rollout_ref.actor.optim)
        self.rollout = HFRollout(load_causal_lm(self.model_path, self.rollout_dtype), self.device, 0, [1], 1, 1)
        # an fp32 checkpoint may be memory-mapped without copying: touch the rollout copy as its first use does
        sum(float(p.sum()) for p in self.rollout.model.parameters())

    def _sync_before(self) -> None:
        module = getattr(self, "actor_module", None) or self.actor.module
        self.rollout.model.load_state_dict(get_model_state_dict(module, options=StateDictOptions(full_state_dict=True)))


def bf16_copy(model: str, out: Path) -> str:
    """The model saved in bf16, as Qwen2.5 ships: loading it in fp32 cannot map the file, it must convert."""
    import torch
    from transformers import AutoTokenizer

    load_causal_lm(model, torch.bfloat16).save_pretrained(out)
    AutoTokenizer.from_pretrained(model).save_pretrained(out)
    return str(out)


def measure_paths(model: str, ranks: int) -> dict:
    cfg = OmegaConf.to_container(compose_config([f"actor_rollout_ref.model.path={model}"]), resolve=True)
    out: dict = {}
    for path in ("before", "after"):
        pool = RankPool({"actor": (MeasuredActor, dict(config=cfg, model_path=model, total_training_steps=1,
                                                       with_ref=False))}, ranks, "cpu")
        try:
            actor = pool.group("actor")
            out.setdefault("startup_peak_mb", {})[path] = [round(x / MB) for x in actor.execute_all("startup", path)]
            out.setdefault("sync_peak_mb", {})[path] = [round(x / MB) for x in actor.execute_all("sync", path)]
        finally:
            pool.shutdown()
    return out


def measure_plan(model: str, ranks: int, work: Path) -> dict:
    slots = echo_slots(work / "slots")
    # prompts truncated to exactly max_prompt_length and full-width responses: the plan's lengths are the real ones
    cfg = compose_config(echo_overrides(model, ranks, 1, 4, 4, slots, work / f"plan{ranks}", turns=1,
                                        max_prompt_length=64, extra=["actor_rollout_ref.rollout.micro_batch_size=16"]))
    with contextlib.redirect_stdout(sys.stderr):  # the trainer's start-up prints; stdout carries the JSON only
        run = Run(cfg)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            run.trainer.fit()
        measured = [p["rss"] for p in run.pool.execute_all("peak_memory")]
    finally:
        run.close()
    plan = plan_for_run(cfg, resolve_model_path(model), None)
    return {"plan_total_mb": round(plan["total"] / MB), "measured_peak_rss_mb": [round(m / MB) for m in measured],
            "ratio": [round(m / plan["total"], 3) for m in measured],
            "plan_phases_mb": {k: round(v / MB) for k, v in plan["phases"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip_plan", action="store_true", help="only the start-up and sync comparison")
    args = parser.parse_args()
    model = resolve_model_path(args.model)
    init_ray(log_to_driver=False)
    result: dict = {"model": args.model, "by_world_size": {}}
    with tempfile.TemporaryDirectory() as work:
        bf16 = bf16_copy(model, Path(work) / "bf16")
        for ranks in args.ranks:
            entry = {"fp32_checkpoint": measure_paths(model, ranks), "bf16_checkpoint": measure_paths(bf16, ranks)}
            if not args.skip_plan:
                entry["plan"] = measure_plan(model, ranks, Path(work))
            result["by_world_size"][str(ranks)] = entry
    result["unit"] = "MB = 2^20 bytes"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
