"""Performance against the anchors, side by side (issue 14), in one command printing one JSON object.

    python benchmarks/compare.py [--quick] [--only trainer,env,retrieval] [--reps 3]

- ``trainer``: our training step vs TRL's ``GRPOTrainer`` on the same work, our update vs raw PyTorch
  forward + backward + AdamW, our rollout vs bare ``generate`` (``compare_trainer.py``; the TRL side needs
  ``bash benchmarks/setup_venv.sh`` once);
- ``env``: our ALFWorld env workers vs the reference's one-Ray-actor-per-env design and the 2-core ideal,
  16 envs with resets included, and memory per env (``compare_env.py``);
- ``retrieval``: our retrieval server (BM25, dense) vs the reference server design on the same encoder and
  FAISS index, 8 concurrent single-query clients, batched requests, answer recall@3 (``compare_retrieval.py``).

Within a section the sides run interleaved (A B A B ..., ``--reps`` rounds) and every value is the median
over the rounds, with ``range`` = [min, max]; ratios are taken within a round. ``targets`` says which of
the issue's targets the medians meet. ``--quick`` (sized for 20 minutes on 2 idle cores once the indexes
and the benchmark environment exist) runs fewer steps, episodes and queries, not fewer rounds. See
docs/performance.md for the measured numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time

import ray

from verl.utils.fs import shared_data_dir
from verl.utils.ray_utils import init_ray

SECTIONS = ("trainer", "env", "retrieval")
# (full run, --quick) sizes; everything else is the same in both.
SIZES = {
    "steps": (4, 2), "episodes": (2, 1), "episode_steps": (50, 20),
    "single_queries": (400, 160), "batched_queries": (2048, 1024),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 20 minutes on 2 cores)")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--reps", type=int, default=3, help="interleaved rounds per section (>= 3 for the record)")
    parser.add_argument("--seed", type=int, default=0)
    trainer = parser.add_argument_group("trainer")
    trainer.add_argument("--model", default="smollm2-135m-instruct")
    trainer.add_argument("--steps", type=int, default=None, help="training steps per run, the first one untimed")
    trainer.add_argument("--group", type=int, default=4, help="completions per prompt")
    trainer.add_argument("--prompts_per_step", type=int, default=4)
    trainer.add_argument("--max_response_length", type=int, default=64)
    trainer.add_argument("--micro_batch", type=int, default=4)
    trainer.add_argument("--remove_padding", action="store_true",
                         help="our update packs sequences (use_remove_padding=True, as the reference scripts run)")
    env = parser.add_argument_group("env")
    env.add_argument("--alfworld_data", default=None, help="folder holding json_2.1.1/ (default: $ALFWORLD_DATA or "
                     "~/.cache/alfworld when they hold it, else the bundled games unpacked into the cache)")
    env.add_argument("--split", default="valid_seen")
    env.add_argument("--num_envs", type=int, default=16)
    env.add_argument("--num_workers", type=int, default=None,
                     help="our env worker processes (env.num_workers; default: the trainer's, one per core reserved)")
    env.add_argument("--episodes", type=int, default=None, help="timed rounds of num_envs episodes per side")
    env.add_argument("--episode_steps", type=int, default=None, help="steps per episode (env.max_steps)")
    retrieval = parser.add_argument_group("retrieval")
    retrieval.add_argument("--corpus_path", default=str(shared_data_dir() / "search" / "corpus.jsonl"))
    retrieval.add_argument("--corpus_limit", type=int, default=None, help="index only the first N passages")
    retrieval.add_argument("--index_root", default=os.path.expanduser("~/.cache/skillzero/search-bench"))
    retrieval.add_argument("--clients", type=int, default=8, help="concurrent closed-loop clients")
    retrieval.add_argument("--batch_size", type=int, default=32, help="queries per batched request")
    retrieval.add_argument("--single_queries", type=int, default=None, help="queries per single-query measurement")
    retrieval.add_argument("--batched_queries", type=int, default=None, help="queries per batched measurement")
    retrieval.add_argument("--questions_per_source", type=int, default=50, help="dev questions per source (recall)")
    args = parser.parse_args(argv)
    for key, (full, quick) in SIZES.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown or not args.sections:
        parser.error(f"--only {args.only!r}: choose from {', '.join(SECTIONS)}")
    if args.reps < 1 or args.steps < 2 or min(args.episodes, args.episode_steps) < 1:
        parser.error("--reps, --episodes and --episode_steps must be >= 1 and --steps >= 2 "
                     "(the first step of a run is warm-up)")
    if args.clients < 1 or args.batch_size < 1 or args.single_queries < args.clients:
        parser.error("--clients and --batch_size must be >= 1 and --single_queries >= --clients")
    return args


def run_section(name: str, args: argparse.Namespace) -> dict:
    if name == "trainer":
        import compare_trainer as section
    elif name == "env":
        import compare_env as section
    else:
        import compare_retrieval as section
    return section.run(args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    report: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_avg_1m_at_start": round(os.getloadavg()[0], 1)},
        "quick": args.quick, "reps": args.reps, "seconds": {},
    }
    if {"trainer", "env"} & set(args.sections):
        # Ray starts its workers at niceness 15; the other sides (TRL, raw PyTorch, the retrieval servers)
        # run at 0. On a machine shared with other jobs that alone would decide the comparison.
        os.environ.setdefault("RAY_worker_niceness", "0")
        init_ray(num_cpus=max(4, os.cpu_count() or 1), log_to_driver=False)
    # stdout carries the JSON alone: Ray prints warnings (also while shutting down) and libraries progress
    with contextlib.redirect_stdout(sys.stderr):
        try:
            for name in args.sections:
                started = time.perf_counter()
                report[name] = run_section(name, args)
                report["seconds"][name] = round(time.perf_counter() - started, 1)
                print(f"[compare] {name} done in {report['seconds'][name]:.0f}s", file=sys.stderr, flush=True)
        finally:
            if ray.is_initialized():
                ray.shutdown()
    report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 1)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
