"""Scenario ``kill_resume`` of benchmarks/faults.py (issue 15 item 1): kill -9 anywhere, resume exactly.

The real CLI (tiny model, echo env, ``save_freq=1``) runs once uninterrupted (the reference) and once as a
chain: start with ``trainer.resume_mode=auto``, ``kill -9`` every process of the run (the driver, the Ray
head it started and the Ray workers: one session, see :func:`kill_session`) at a seeded random moment,
start again, ... until the run completes. Each kill aims at one phase by watching the run's folder:

- ``startup``: a random delay after the process starts (before or around its first rollout);
- ``rollout``: after the metrics row of a step appears (the next step's rollout starts at once);
- ``update``: after a step's rollout log ``rollouts/train_step_N_0.jsonl`` appears (reward, advantage,
  actor update follow);
- ``save``: after the hidden ``.tmp-global_step_N-*`` folder appears, by a delay up to 1.5 x the save
  time, so some kills land after the commit but before the step's metrics row.

A delay is drawn from [0, the phase's duration in the reference run]. At the kill the folder is read to
name the phase actually hit (``observed``). Figures: kills per phase, the checkpoint resume picks (it must
be complete and hold the same bytes as the reference's checkpoint of that step: ``bad_checkpoints``
counts the others, and any committed checkpoint whose files differ), steps redone per kill, and whether
the chain's final weights (the actor's checkpoint files, byte for byte) and metrics.jsonl (every field
but the timing and memory ones, exactly) equal the reference's.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import mean
from typing import Any

from verl.utils.checkpoint import CheckpointManager
from verl.utils.fs import REPO_ROOT

PHASES = ("save", "update", "rollout", "startup")  # a plan of n kills aims at the first n, cyclically
# metrics that measure time or memory: they differ between any two runs and are not compared
NOT_COMPARED = re.compile(r"^(timing_s/|perf/(time_per_step|throughput|max_rss_gb)$)")
RESUMED = re.compile(r"resumed from (\S+) at global step (\d+)")
POLL_S = 0.01


def echo_args(model: Path, slots: Path, out_dir: Path, total_steps: int) -> list[str]:
    """A tiny echo-env run that saves after every step and logs its rollouts (the update-phase signal)."""
    return [f"actor_rollout_ref.model.path={model}", f"data.train_files={slots / 'train.parquet'}",
            f"data.val_files={slots / 'test.parquet'}", "env.env_name=echo", "data.train_batch_size=4",
            "data.val_batch_size=8", "env.rollout.n=4", "env.max_steps=1", "data.max_prompt_length=64",
            "data.max_response_length=4", "actor_rollout_ref.actor.ppo_mini_batch_size=4",
            "actor_rollout_ref.actor.optim.lr=1e-2", "env.echo.words=[apple]",
            f"trainer.total_training_steps={total_steps}", "trainer.test_freq=-1", "trainer.save_freq=1",
            "trainer.val_before_train=False", "trainer.logger=[file]", "trainer.log_prompts=True",
            "trainer.resume_mode=auto", f"trainer.default_local_dir={out_dir}", "ray_init.num_cpus=4"]


def start(args: list[str], log: Path) -> subprocess.Popen:
    """``python -m verl.trainer.main_ppo args`` as the leader of a new session (everything it starts,
    Ray's head processes and workers included, stays in that session)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, "-m", "verl.trainer.main_ppo", *args], cwd=REPO_ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except OSError:  # exited meanwhile
                pass
    return pids


def kill_session(proc: subprocess.Popen, wait_s: float = 60.0) -> None:
    """SIGKILL every process of the run's session (Ray puts each worker in a process group of its own,
    but all stay in the session the run started), then wait until none is left."""
    deadline = time.monotonic() + wait_s
    while pids := session_pids(proc.pid):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.poll()  # reap the leader
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} of the killed run are still alive after {wait_s:.0f}s")
        time.sleep(0.05)
    proc.wait()


class RunFolder:
    """What a run's folder shows: metrics rows, rollout logs, partial saves, checkpoints."""

    def __init__(self, root: Path):
        self.root = root
        self.since = 0.0  # files older than this (left by a killed process) are ignored

    def _fresh(self, path: Path) -> bool:
        try:
            return path.stat().st_mtime >= self.since
        except OSError:  # removed meanwhile
            return False

    def rows(self) -> list[dict[str, Any]]:
        path = self.root / "metrics.jsonl"
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line being written
                break
        return rows

    def last_row_step(self) -> int:
        rows = self.rows()
        return int(rows[-1]["step"]) if rows else 0

    def rollout_logged(self, step: int) -> bool:
        return self._fresh(self.root / "rollouts" / f"train_step_{step}_0.jsonl")

    def saving(self) -> int | None:
        """The step of a save in progress (a hidden partial folder), else None."""
        if not self.root.exists():
            return None
        for path in self.root.iterdir():
            if (m := re.match(r"^\.(tmp|old)-global_step_(\d+)-", path.name)) and self._fresh(path):
                return int(m.group(2))
        return None

    def committed(self) -> int:
        """The step ``latest_checkpointed_iteration.txt`` names (0 when none)."""
        latest = CheckpointManager(str(self.root)).latest()
        return int(latest.name.split("_")[-1]) if latest else 0

    def observed_phase(self) -> tuple[str, int]:
        """(phase, step) read from the folder; the step in progress is the one after the last metrics row."""
        step = self.last_row_step() + 1
        if (saving := self.saving()) is not None:
            return "save", saving
        if self.committed() >= step:
            return "after_save_before_metrics_row", step
        if self.rollout_logged(step):
            return "update", step
        return "rollout", step


@dataclass
class Kill:
    aimed: str
    observed: str
    step_in_progress: int
    delay_s: float
    expected_resume: int  # the step of the checkpoint resume should pick, read at the kill
    folder_at_kill: str  # what the folder showed: last metrics row, latest checkpoint, save in progress
    resumed_from: int | None = None  # the step the next start reported (None: killed before it said)
    steps_redone: int = 0


def checkpoint_contents(folder: Path) -> dict[str, Any]:
    """What a checkpoint's ``actor/`` folder holds (weights, optimizer, RNG, tokenizer): every file's bytes,
    except DCP's ``.metadata``, which names the save's temporary folder and a random save id: of that
    file, the tensor layout and storage index it describes (an unreadable one is a difference too)."""
    from torch.distributed.checkpoint import FileSystemReader

    contents: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        if path.name == ".metadata":
            try:
                meta = FileSystemReader(str(path.parent)).read_metadata()
                contents[".metadata"] = (meta.state_dict_metadata, meta.storage_data, meta.planner_data)
            except Exception as err:  # noqa: BLE001 - a damaged file is what we look for
                contents[".metadata"] = f"unreadable: {err}"
        elif path.is_file():
            contents[str(path.relative_to(folder))] = path.read_bytes()
    return contents


def phase_durations(reference: RunFolder) -> dict[str, float]:
    """Median seconds of each phase in the reference run (the windows the kill delays are drawn from)."""
    rows = reference.rows()

    def median(key: str) -> float:
        values = sorted(float(r.get(key, 0.0)) for r in rows)
        return values[len(values) // 2]

    return {"rollout": median("timing_s/gen"), "update": median("timing_s/step") - median("timing_s/gen"),
            "save": median("timing_s/save_checkpoint")}


def wait_for_anchor(proc: subprocess.Popen, folder: RunFolder, phase: str, skip: int,
                    timeout_s: float) -> int | None:
    """Wait until the aimed phase starts (``skip`` occurrences later); its step, or None if the run ended."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    last_row, last_rollout, last_save = folder.last_row_step(), None, None
    while time.monotonic() < deadline and proc.poll() is None:
        row = folder.last_row_step()
        step = row + 1
        if phase == "rollout" and row > last_row:
            last_row = row
            seen += 1
        elif phase == "update" and folder.rollout_logged(step) and last_rollout != step:
            last_rollout = step
            seen += 1
        elif phase == "save" and (saving := folder.saving()) is not None and last_save != saving:
            last_save, step = saving, saving
            seen += 1
        if seen > skip:
            return step
        time.sleep(POLL_S)
    return None


def run_chain(args: list[str], out_dir: Path, kills: int, durations: dict[str, float], startup_s: float,
              rng: random.Random, logs: Path) -> tuple[list[Kill], subprocess.CompletedProcess | None, int]:
    folder = RunFolder(out_dir)
    done: list[Kill] = []
    plan = [PHASES[i % len(PHASES)] for i in range(kills)]
    rng.shuffle(plan)
    starts = 0
    while True:
        log = logs / f"start_{starts}.log"
        folder.since = time.time()
        proc = start(args, log)
        starts += 1
        if not plan:
            proc.wait(timeout=1800)
            return done, subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text()), starts
        aimed = plan[0]
        if aimed == "startup":
            delay = rng.uniform(0.0, startup_s)
        else:
            wait_for_anchor(proc, folder, aimed, rng.randint(0, 1), timeout_s=1800)
            delay = rng.uniform(0.0, durations[aimed] * (1.5 if aimed == "save" else 1.0))
        anchor = time.monotonic()
        while time.monotonic() - anchor < delay and proc.poll() is None:
            time.sleep(POLL_S)
        if proc.poll() is not None:  # the run completed before the moment came: nothing left to kill
            return done, subprocess.CompletedProcess(proc.args, proc.returncode, log.read_text()), starts
        os.killpg(proc.pid, signal.SIGSTOP)  # freeze the driver so the folder read below is the kill moment
        observed, in_progress = folder.observed_phase()
        if aimed == "startup" and observed == "rollout" and not _started_training(log):
            observed = "startup"
        manager = CheckpointManager(str(out_dir))
        latest = manager.latest()
        complete = manager.checkpoints()
        expected = (latest or (complete[-1].path if complete else None))
        seen = (f"last row {folder.last_row_step()}, latest {folder.committed()}, saving {folder.saving()}, "
                f"rollout {in_progress} logged {folder.rollout_logged(in_progress)}")
        kill_session(proc)
        plan.pop(0)
        expected_step = int(expected.name.split("_")[-1]) if expected else 0
        done.append(Kill(aimed, observed, in_progress, round(delay, 3), expected_step, seen,
                         steps_redone=0 if observed == "startup" else max(in_progress - expected_step, 0)))


def _started_training(log: Path) -> bool:
    """A resumed start has loaded its checkpoint (the line comes just before the loop). A fresh start prints
    nothing there, so a fresh start killed by a ``startup`` kill before its first rollout log counts as
    ``startup``."""
    return bool(RESUMED.search(log.read_text(errors="replace")))


def scenario_kill_resume(work: Path, kills: int, total_steps: int, seed: int) -> dict[str, Any]:
    from verl.utils.tiny_model import build_tiny_model

    model = build_tiny_model(work / "tiny-qwen2")
    slots = work / "echo_slots_kill" / "text"
    if not (slots / "train.parquet").exists():
        subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "text",
                        "--env", "echo", "--train_data_size", "64", "--val_data_size", "8", "--local_dir",
                        str(slots.parent)], check=True, capture_output=True)
    logs = work / "kill_logs"
    logs.mkdir(exist_ok=True)
    reference_dir, chain_dir = work / "kill_reference", work / "kill_chain"

    t0 = time.monotonic()
    ref = start(echo_args(model, slots, reference_dir, total_steps), logs / "reference.log")
    reference = RunFolder(reference_dir)
    while not reference.rollout_logged(1) and ref.poll() is None:
        time.sleep(POLL_S)
    first_rollout_s = time.monotonic() - t0
    ref.wait(timeout=1800)
    if ref.returncode != 0:
        return {"error": "the reference run failed: " + (logs / "reference.log").read_text()[-2000:], "lost": True}
    durations = phase_durations(reference)
    startup_s = max(first_rollout_s - durations["rollout"], 1.0)

    done, final, starts = run_chain(echo_args(model, slots, chain_dir, total_steps), chain_dir, kills, durations,
                                    startup_s, random.Random(seed), logs)
    for kill, number in zip(done, range(1, len(done) + 1)):  # what the start after each kill reported
        found = RESUMED.search((logs / f"start_{number}.log").read_text(errors="replace"))
        kill.resumed_from = int(found.group(2)) if found else None

    chain = RunFolder(chain_dir)
    wrong_pick = [f"kill {i}: resumed from {k.resumed_from}, expected {k.expected_resume}"
                  for i, k in enumerate(done) if k.resumed_from is not None and k.resumed_from != k.expected_resume]
    bad_checkpoints = [path.name for path in sorted(chain_dir.glob("global_step_*")) if
                       checkpoint_contents(path / "actor") != checkpoint_contents(reference_dir / path.name / "actor")]
    ref_rows, chain_rows = reference.rows(), chain.rows()
    row_diffs = _row_differences(ref_rows, chain_rows)
    final_step = f"global_step_{total_steps}"
    weights_equal = ((chain_dir / final_step).exists() and checkpoint_contents(chain_dir / final_step / "actor")
                     == checkpoint_contents(reference_dir / final_step / "actor"))
    redone = [k.steps_redone for k in done]
    result: dict[str, Any] = {
        "total_steps": total_steps, "kills": len(done), "starts": starts,
        "kills_aimed": {p: sum(k.aimed == p for k in done) for p in PHASES},
        "kills_observed": dict(Counter(k.observed for k in done)),
        "final_exit_code": final.returncode if final else None,
        "bad_checkpoints": len(bad_checkpoints) + len(wrong_pick), "bad_checkpoint_names": bad_checkpoints,
        "resumes_not_from_the_expected_checkpoint": wrong_pick,
        "metrics_steps": [r["step"] for r in chain_rows] == list(range(1, total_steps + 1)),
        "metrics_rows_differing": len(row_diffs), "metrics_differences": row_diffs[:5],
        "final_weights_equal": weights_equal,
        "runs_differing": int(bool(row_diffs) or not weights_equal),
        "steps_redone_per_kill": {"mean": round(mean(redone), 2) if redone else 0.0, "max": max(redone, default=0)},
        "phase_seconds_in_reference": {k: round(v, 2) for k, v in durations.items()},
        "kill_log": [asdict(k) for k in done],
    }
    result["lost"] = bool(result["bad_checkpoints"] or result["runs_differing"] or not result["metrics_steps"]
                          or result["final_exit_code"] != 0)
    if result["lost"] and final is not None:
        result["last_output_tail"] = final.stdout[-2000:]
    return result


def _row_differences(reference: list[dict], chain: list[dict]) -> list[str]:
    """Steps whose compared fields differ (a missing or extra row counts too)."""
    by_step = {}
    for row in chain:
        by_step.setdefault(row["step"], []).append(row)
    diffs = []
    for row in reference:
        got = by_step.pop(row["step"], [])
        if len(got) != 1:
            diffs.append(f"step {row['step']}: {len(got)} rows")
            continue
        keys = {k for k in row.keys() | got[0].keys() if not NOT_COMPARED.match(k)}
        differing = sorted(k for k in keys if row.get(k) != got[0].get(k))
        if differing:
            shown = ", ".join(f"{k} {row.get(k)} vs {got[0].get(k)}" for k in differing[:3])
            diffs.append(f"step {row['step']}: {shown}")
    diffs += [f"step {step}: {len(rows)} extra rows" for step, rows in by_step.items()]
    return diffs
