"""Training-step throughput of the real trainer (Ray, FSDP2, hf rollout) for 1 and 2 ranks.

    python benchmarks/trainer_step.py [--model DIR] [--ranks 1 2] [--steps 4] [--group 4] [--batch 4]
    python benchmarks/trainer_step.py --model smollm2-135m-instruct --ranks 1 --steps 3 --lora_rank 16

Runs the echo environment (no env cost, so the numbers are the trainer's own: generation, log-probs,
update, weight sync) for ``--steps`` steps per world size and prints one JSON object: per world size
the mean seconds per step and per phase (first step excluded as warm-up), tokens per second, samples
per step and the peak resident memory of the driver. Without ``--model`` a tiny random Qwen2 is built
in the cache (the default SmolLM2 works too: ``--model smollm2-135m-instruct``).

With ``--lora_rank R`` every world size runs twice, full fine-tuning and LoRA of rank R (``lora_alpha=2R``,
all-linear), one after the other, each saving a checkpoint at its last step; per variant the JSON then also holds
the peak resident memory of a rank (``perf/max_rss_gb``, largest over the steps) and the size of the
actor checkpoint folder (``global_step_N/actor``) in MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from verl.trainer.config import compose_config
from verl.trainer.main_ppo import run_ppo
from verl.utils.fs import REPO_ROOT, cache_dir
from verl.utils.ray_utils import init_ray
from verl.utils.tiny_model import build_tiny_model

PHASES = ("gen", "old_log_prob", "update_actor", "step")


def echo_slots(out: Path) -> Path:
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "text",
                    "--env", "echo", "--train_data_size", "256", "--val_data_size", "4", "--local_dir", str(out)],
                   check=True, capture_output=True)
    return out / "text"


def echo_overrides(model: str, ranks: int, steps: int, group: int, batch: int, slots: Path, out: Path,
                   max_steps: int = 2, prompt_length: int = 128) -> list[str]:
    """A training run on the echo env (no env cost) writing metrics to ``out``."""
    return [
        "env.env_name=echo", f"actor_rollout_ref.model.path={model}", f"trainer.n_gpus_per_node={ranks}",
        f"data.train_files={slots / 'train.parquet'}", f"data.val_files={slots / 'test.parquet'}",
        f"data.train_batch_size={batch}", f"env.rollout.n={group}", f"env.max_steps={max_steps}",
        f"data.max_prompt_length={prompt_length}", "data.max_response_length=32", f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        f"trainer.total_training_steps={steps}", "trainer.test_freq=-1", "trainer.save_freq=-1",
        "trainer.val_before_train=False", "trainer.logger=[file]", f"trainer.default_local_dir={out}",
    ]


def folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)


def run(model: str, ranks: int, steps: int, group: int, batch: int, work: Path, device: str = "cpu",
        lora_rank: int | None = None) -> dict:
    """One run; with ``lora_rank`` (0 = full fine-tuning) it also saves at the last step and reports the
    rank's peak RSS and the checkpoint size."""
    slots = echo_slots(work / "slots")
    out = work / f"ranks{ranks}" if lora_rank is None else work / f"ranks{ranks}_lora{lora_rank}"
    extra = [f"trainer.device={device}"]
    if lora_rank is not None:
        extra += [f"trainer.save_freq={steps}", f"actor_rollout_ref.model.lora_rank={lora_rank}",
                  f"actor_rollout_ref.model.lora_alpha={2 * lora_rank}"]
    run_ppo(compose_config(echo_overrides(model, ranks, steps, group, batch, slots, out) + extra))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result = {} if lora_rank is None else {
        "rank_peak_rss_gb": round(max(r["perf/max_rss_gb"] for r in rows), 3),
        "checkpoint_mb": folder_mb(out / f"global_step_{steps}" / "actor"),
    }
    rows = rows[1:]  # drop warm-up
    return result | {
        "seconds_per_step": {p: round(statistics.mean(r[f"timing_s/{p}"] for r in rows), 3) for p in PHASES},
        "tokens_per_second": round(statistics.mean(r["perf/total_num_tokens"] / r["timing_s/step"] for r in rows), 1),
        "samples_per_step": statistics.mean(r["rollout/num_samples"] for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lora_rank", type=int, default=0, help="also run LoRA of this rank (0 = full only)")
    args = parser.parse_args()
    model = args.model or str(build_tiny_model(cache_dir() / "models" / "tiny-qwen2-bench"))
    init_ray(log_to_driver=False)
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for ranks in args.ranks:
            if args.lora_rank:
                results[str(ranks)] = {f"lora_rank_{r}": run(model, ranks, args.steps, args.group, args.batch,
                                                             Path(work), lora_rank=r) for r in (0, args.lora_rank)}
            else:
                results[str(ranks)] = run(model, ranks, args.steps, args.group, args.batch, Path(work))
    print(json.dumps({"model": model, "steps": args.steps, "group": args.group, "batch": args.batch,
                      "by_world_size": results,
                      "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
