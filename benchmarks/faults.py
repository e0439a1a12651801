"""Reliability figures (issue 15): how much abuse SkillZero takes without losing anything.

    python benchmarks/faults.py [--quick] [--seed 0]
        [--only fuzz_outputs,http_fuzz,disk_full,startup_errors,kill_resume,retriever_outage]

Prints one JSON object with a figure per scenario and exits 1 if any scenario lost something (a crash, an
invalid output counted valid, a 5xx, a server that went down, a checkpoint picked while incomplete, a
start-up error that did not stop cleanly). ``--quick`` (CI-sized, <= 15 minutes on 2 cores) draws fewer
fuzz cases; the full run draws 100k outputs per projection. The scenarios (docs/reliability.md):

- ``fuzz_outputs``: random and adversarial model outputs through the real managers' ``step`` (Search-QA
  over an in-process BM25 index, ALFWorld over real TextWorld games in Ray workers) and through the
  projection / compression parsers they call (:mod:`benchmarks.fuzz_outputs`);
- ``http_fuzz``: schema-driven and raw attacks on the real retrieval server (:mod:`benchmarks.fuzz_http`);
- ``disk_full``: the real CLI (tiny model, echo env) checkpointing onto a tmpfs that fills up during a save
  (needs permission to mount a tmpfs; reported as skipped otherwise), then resumed with more room;
- ``startup_errors``: the catalogue test of start-up errors (tests/verl/trainer/test_startup_errors.py);
- ``dead_env_workers``: ``kill -9`` and ``SIGSTOP`` of ALFWorld worker processes mid-episode, real games played
  by their walkthroughs (:mod:`benchmarks.faults_env`);
- ``kill_resume``: ``kill -9`` of the whole CLI run (driver, Ray head, workers) at seeded moments aimed at
  start-up, rollout, update and checkpoint save, resumed with ``resume_mode=auto`` until it completes,
  then compared with an uninterrupted run (:mod:`benchmarks.faults_kill`; 20 kills over 20 steps, 2 over
  3 with ``--quick``);
- ``retriever_outage``: the real retrieval server killed for 5 s, 60 s (10 s with ``--quick``) and for good
  during Search-QA training (:mod:`benchmarks.faults_outage`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import faults_env, faults_kill, faults_outage, fuzz_http, fuzz_outputs  # noqa: E402
from verl.utils.checkpoint import LATEST, CheckpointManager  # noqa: E402
from verl.utils.fs import shared_data_dir  # noqa: E402

SEARCH_TASK = {"question": "Who is the author of The Book of the Law?", "ground_truth": ["Aleister Crowley"],
               "data_source": "popqa", "skill_type": "entity_attribute_lookup"}


def bm25_index(work: Path) -> Path:
    """A BM25 index over the first 400 passages of the bundled corpus."""
    from agent_system.environments.env_package.search.index import build_bm25_index

    corpus = work / "corpus_400.jsonl"
    with (shared_data_dir() / "search" / "corpus.jsonl").open() as source:
        corpus.write_text("".join(line for _, line in zip(range(400), source)))
    index = work / "bm25"
    if not index.exists():
        build_bm25_index(corpus, index)
    return index


# ----------------------------------------------------------------------------------- scenarios
def scenario_fuzz_outputs(sizes: dict[str, int], seed: int, work: Path) -> dict[str, Any]:
    import random

    import ray
    from omegaconf import OmegaConf

    from agent_system.environments import make_env_manager
    from agent_system.environments.env_package.alfworld.games import unpack_shared_data
    from agent_system.environments.env_package.alfworld.projection import project_action
    from agent_system.environments.env_package.search.projection import parse_action

    out: dict[str, Any] = {}
    search_cfg = OmegaConf.create({
        "env_name": "search", "max_steps": 4, "history_length": 2,
        "search": {"search_url": f"local:{bm25_index(work)}", "topk": 2, "timeout": 5, "max_retries": 0,
                   "retry_backoff": 0.0, "max_outage_s": 0, "concurrency": 1}})
    search = make_env_manager(search_cfg, "train", 16)
    out["search_manager_step"] = fuzz_outputs.run_manager(
        search, fuzz_outputs.search_sample, sizes["search_manager"], seed,
        lambda episode: [dict(SEARCH_TASK, seed=episode) for _ in range(16)]).as_dict()
    search.close()

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    alf_cfg = OmegaConf.create({
        "env_name": "alfworld/AlfredTWEnv", "seed": 0, "max_steps": 50, "history_length": 2, "rollout": {"n": 1},
        "step_timeout_s": 120.0,
        "resources_per_worker": {"num_cpus": 0.1},
        "alfworld": {"eval_dataset": "eval_in_distribution", "data_path": str(unpack_shared_data())}})
    alfworld = make_env_manager(alf_cfg, "val", 4)
    out["alfworld_manager_step"] = fuzz_outputs.run_manager(
        alfworld, fuzz_outputs.alfworld_sample, sizes["alfworld_manager"], seed,
        lambda episode: [{"seed": 4 * episode + i} for i in range(4)]).as_dict()
    alfworld.close()
    ray.shutdown()

    def projection(make, parse) -> dict[str, Any]:
        rng, report = random.Random(seed + 1), fuzz_outputs.FuzzReport()
        for _ in range(sizes["projection"]):
            sample = make(rng)
            report.outputs += 1
            report.invalid_outputs += not sample.valid
            try:
                valid = parse(sample.text)
            except Exception as err:  # noqa: BLE001 - a crash is what we count
                report.crashes += 1
                report.note(sample.text, f"crash {type(err).__name__}")
                continue
            if valid != sample.valid:
                report.validity_mismatches += 1
                report.invalid_counted_valid += valid
                report.note(sample.text, f"parsed valid={valid}, label {sample.valid}")
        return report.as_dict()

    out["alfworld_projection"] = projection(fuzz_outputs.alfworld_sample, lambda t: project_action(t)[1])
    out["search_projection"] = projection(fuzz_outputs.search_sample, lambda t: parse_action(t).is_valid)
    out["compression_tag"] = fuzz_outputs.fuzz_compression(sizes["projection"], seed).as_dict()
    out["lost"] = any(r["crashes"] or r["validity_mismatches"] or r["wins_after_invalid"]
                      for r in out.values() if isinstance(r, dict))
    return out


def scenario_http_fuzz(examples: int, seed: int, work: Path) -> dict[str, Any]:
    from agent_system.environments.env_package.search.server_process import RetrievalServer

    with RetrievalServer(bm25_index(work)) as server:
        schema = fuzz_http.schema_fuzz(server, examples, seed)
        raw = fuzz_http.raw_attacks(server)
        up = server.process.poll() is None and server.healthy()
        bound = server.url.split("//")[1].split(":")[0]
    lost = bool(schema["responses_5xx"] or schema["valid_not_200"] or raw["responses_5xx"]
                or not raw["memory_bounded"] or not up)
    return {"schema_driven": schema, "raw": raw, "server_up_at_end": up, "bound_to": bound, "lost": lost}


def _cli(args: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=timeout)


def _echo_run(work: Path, out_dir: Path, total: int) -> list[str]:
    from verl.utils.tiny_model import build_tiny_model

    model = build_tiny_model(work / "tiny-qwen2")
    slots = work / "echo_slots" / "text"
    if not (slots / "train.parquet").exists():
        subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "text",
                        "--env", "echo", "--train_data_size", "64", "--val_data_size", "8", "--local_dir",
                        str(work / "echo_slots")], check=True, capture_output=True)
    return [f"actor_rollout_ref.model.path={model}", f"data.train_files={slots / 'train.parquet'}",
            f"data.val_files={slots / 'test.parquet'}", "env.env_name=echo", "data.train_batch_size=4",
            "data.val_batch_size=8", "env.rollout.n=4", "env.max_steps=1", "data.max_prompt_length=64",
            "data.max_response_length=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "env.echo.words=[apple]", f"trainer.total_training_steps={total}", "trainer.test_freq=-1",
            "trainer.save_freq=1", "trainer.val_before_train=False", "trainer.logger=[file]",
            f"trainer.default_local_dir={out_dir}", "ray_init.num_cpus=4"]


def _mount_tmpfs(path: Path, size_bytes: int, remount: bool = False) -> bool:
    options = f"{'remount,' if remount else ''}size={size_bytes}"
    command = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
    return subprocess.run(command, capture_output=True).returncode == 0


def scenario_disk_full(work: Path) -> dict[str, Any]:
    """Step 1 saves; the disk then has room for less than one more checkpoint; resume picks step 1."""
    disk = work / "disk"
    disk.mkdir(exist_ok=True)
    if not _mount_tmpfs(disk, 256 << 20):
        return {"skipped": "cannot mount a tmpfs here (needs root); the unit test "
                           "tests/verl/utils/test_checkpoint.py covers the failing write with RLIMIT_FSIZE",
                "lost": False}
    out_dir = disk / "run"
    try:
        first = _cli(_echo_run(work, out_dir, 1))
        if first.returncode != 0:
            return {"error": f"the first run failed: {first.stderr[-1500:]}", "lost": True}
        checkpoint = sum(f.stat().st_size for f in (out_dir / "global_step_1").rglob("*") if f.is_file())
        used = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
        _mount_tmpfs(disk, used + checkpoint // 2, remount=True)  # room for half a checkpoint more
        started = time.perf_counter()
        failed = _cli(_echo_run(work, out_dir, 3))
        detect_s = time.perf_counter() - started
        leftovers = sorted(p.name for p in out_dir.iterdir() if p.name.startswith("."))
        picked = CheckpointManager(str(out_dir)).resume_path("auto", None)
        _mount_tmpfs(disk, 256 << 20, remount=True)
        resumed = _cli(_echo_run(work, out_dir, 3))
        steps = [json.loads(line)["step"] for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
        message = next((line for line in failed.stderr.splitlines() if "SkillZero stopped" in line), "")
        result = {
            "checkpoint_bytes": checkpoint, "failed_run_exit_code": failed.returncode,
            "clear_error": bool(message) and "Traceback" not in message, "message": message[:400],
            "seconds_to_stop": round(detect_s, 1), "partial_folders_left": leftovers,
            "resume_picks": picked.name if picked else None,
            "resumed_exit_code": resumed.returncode, "resumed_from_step_1": "at global step 1" in resumed.stdout,
            "metrics_steps_after_resume": steps, "latest_after_resume": (out_dir / LATEST).read_text(),
        }
        result["lost"] = not (failed.returncode == 3 and result["clear_error"] and not leftovers
                              and result["resume_picks"] == "global_step_1" and resumed.returncode == 0
                              and steps == [1, 2, 3])
        if result["lost"]:
            result["stderr_tail"] = (failed.stderr + resumed.stderr)[-2000:]
        return result
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def scenario_startup_errors() -> dict[str, Any]:
    """The catalogue test: every case must stop before work with a message naming the key/file and fix."""
    test = "tests/verl/trainer/test_startup_errors.py"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=1200)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
    return {"test": test, "summary": summary, "lost": proc.returncode != 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized: fewer fuzz cases (<= 15 minutes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default="fuzz_outputs,http_fuzz,disk_full,startup_errors,dead_env_workers,"
                                          "kill_resume,retriever_outage")
    args = parser.parse_args(argv)
    sizes = ({"projection": 20_000, "search_manager": 5_000, "alfworld_manager": 200} if args.quick else
             {"projection": 100_000, "search_manager": 100_000, "alfworld_manager": 2_000})
    http_examples = 300 if args.quick else 3_000
    work = Path(tempfile.mkdtemp(prefix="skillzero-faults-"))
    runners = {
        "fuzz_outputs": lambda: scenario_fuzz_outputs(sizes, args.seed, work),
        "http_fuzz": lambda: scenario_http_fuzz(http_examples, args.seed, work),
        "disk_full": lambda: scenario_disk_full(work),
        "startup_errors": scenario_startup_errors,
        "dead_env_workers": lambda: faults_env.run(**({"kills": 2, "hangs": 1, "step_timeout_s": 15.0} if args.quick
                                                      else {"kills": 10, "hangs": 3, "num_envs": 8,
                                                            "step_timeout_s": 30.0}), seed=args.seed),
        "kill_resume": lambda: faults_kill.scenario_kill_resume(
            work, kills=2 if args.quick else 20, total_steps=3 if args.quick else 20, seed=args.seed),
        "retriever_outage": lambda: faults_outage.scenario_retriever_outage(
            work, bm25_index(work), outages_s=(5.0, 10.0 if args.quick else 60.0),
            max_outage_s=30.0 if args.quick else 90.0, seed=args.seed),
    }
    report: dict[str, Any] = {"mode": "quick" if args.quick else "full", "seed": args.seed, "sizes": sizes}
    started = time.perf_counter()
    try:
        for name in args.only.split(","):
            t0 = time.perf_counter()
            report[name] = runners[name]()
            report[name]["seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["lost_anything"] = any(isinstance(v, dict) and v.get("lost") for v in report.values())
    print(json.dumps(report, indent=1))
    return 1 if report["lost_anything"] else 0


if __name__ == "__main__":
    sys.exit(main())
