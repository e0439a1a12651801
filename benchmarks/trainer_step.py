"""Training-step throughput of the real trainer (Ray, FSDP2, hf rollout) for 1 and 2 ranks.

    python benchmarks/trainer_step.py [--model DIR] [--ranks 1 2] [--steps 4] [--group 4] [--batch 4]
    python benchmarks/trainer_step.py --model smollm2-135m-instruct --ranks 1 --steps 2 --lora_rank 16

Runs the echo environment (no env cost, so the numbers are the trainer's own: generation, log-probs,
update, weight sync) for ``--steps`` steps per world size and prints one JSON object: per world size
the mean seconds per step and per phase (first step excluded as warm-up), tokens per second, samples
per step and the peak resident memory of the driver. Without ``--model`` a tiny random Qwen2 is built
in the cache (the default SmolLM2 works too: ``--model smollm2-135m-instruct``). ``compare.py`` reuses
:func:`run_rows` for its trainer-vs-TRL comparison.

With ``--lora_rank R`` every world size runs twice, full fine-tuning and LoRA of rank R (``lora_alpha=2R``,
all-linear), one after the other, each saving a checkpoint at its last step; per variant the JSON then also
holds the peak resident memory of a rank (``perf/max_rss_gb``, largest over the measured steps) and the size
of the actor checkpoint folder (``global_step_N/actor``) in MB.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from verl.trainer.config import compose_config
from verl.trainer.main_ppo import run_ppo
from verl.utils.fs import REPO_ROOT, cache_dir
from verl.utils.ray_utils import init_ray
from verl.utils.tiny_model import build_tiny_model

PHASES = ("gen", "old_log_prob", "update_actor", "step")


def echo_slots(out: Path) -> Path:
    if (out / "text" / "train.parquet").is_file():
        return out / "text"
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "text",
                    "--env", "echo", "--train_data_size", "256", "--val_data_size", "4", "--local_dir", str(out)],
                   check=True, capture_output=True)
    return out / "text"


def echo_overrides(model: str, ranks: int, steps: int, group: int, batch: int, slots: Path, out: Path, *,
                   turns: int = 2, max_prompt_length: int = 128, max_response_length: int = 32,
                   extra: Sequence[str] = ()) -> list[str]:
    """A training run on the echo env (no env cost; ``batch`` prompts x ``group`` completions, ``turns``
    turns) writing metrics to ``out``. ``extra`` adds Hydra overrides."""
    return [
        "env.env_name=echo", f"actor_rollout_ref.model.path={model}", f"trainer.n_gpus_per_node={ranks}",
        f"data.train_files={slots / 'train.parquet'}", f"data.val_files={slots / 'test.parquet'}",
        f"data.train_batch_size={batch}", f"env.rollout.n={group}", f"env.max_steps={turns}",
        f"data.max_prompt_length={max_prompt_length}", f"data.max_response_length={max_response_length}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        f"trainer.total_training_steps={steps}", "trainer.test_freq=-1", "trainer.save_freq=-1",
        "trainer.val_before_train=False", "trainer.logger=[file]", f"trainer.default_local_dir={out}", *extra,
    ]


def run_rows(model: str, ranks: int, steps: int, group: int, batch: int, work: Path, **overrides) -> list[dict]:
    """Train ``steps`` steps (:func:`echo_overrides`, same keywords); returns the metrics row of every step
    after the first (warm-up)."""
    slots = echo_slots(work / "slots")
    out = work / f"ranks{ranks}"
    shutil.rmtree(out, ignore_errors=True)  # metrics.jsonl of an earlier run in the same folder
    run_ppo(compose_config(echo_overrides(model, ranks, steps, group, batch, slots, out, **overrides)))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]


def summarize_rows(rows: list[dict]) -> dict:
    """Mean seconds per step and phase, tokens per second and samples per step."""
    return {
        "seconds_per_step": {p: round(statistics.mean(r.get(f"timing_s/{p}", 0.0) for r in rows), 3) for p in PHASES},
        "tokens_per_second": round(statistics.mean(r["perf/total_num_tokens"] / r["timing_s/step"] for r in rows), 1),
        "samples_per_step": statistics.mean(r["rollout/num_samples"] for r in rows),
    }


def folder_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 2)


def lora_variant(model: str, ranks: int, steps: int, group: int, batch: int, work: Path, lora_rank: int) -> dict:
    """One run with ``lora_rank`` (0 = full fine-tuning) that saves at its last step: timings, the rank's
    peak RSS and the checkpoint size."""
    extra = [f"trainer.save_freq={steps}", f"actor_rollout_ref.model.lora_rank={lora_rank}",
             f"actor_rollout_ref.model.lora_alpha={2 * lora_rank}"]
    rows = run_rows(model, ranks, steps, group, batch, work, extra=extra)
    return summarize_rows(rows) | {"rank_peak_rss_gb": round(max(r["perf/max_rss_gb"] for r in rows), 3),
                                   "checkpoint_mb": folder_mb(work / f"ranks{ranks}" / f"global_step_{steps}" / "actor")}


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
                results[str(ranks)] = {f"lora_rank_{r}": lora_variant(model, ranks, args.steps, args.group, args.batch,
                                                                      Path(work), r) for r in (0, args.lora_rank)}
            else:
                results[str(ranks)] = summarize_rows(run_rows(model, ranks, args.steps, args.group, args.batch, Path(work)))
    print(json.dumps({"model": model, "steps": args.steps, "group": args.group, "batch": args.batch,
                      "by_world_size": results,
                      "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
