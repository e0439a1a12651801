"""Checkpoints and metrics across runs, through the real command line (tiny model, echo env, 1-3 steps).

One folder lives through four runs: a normal run (in-process, to set the scene); then through the CLI a
resume whose ``latest`` checkpoint is damaged (falls back, re-saves the step); a fresh start into the
same folder with pruning (keeps its own save and the earlier metrics); and a resume with nothing left to
resume from (stops with the fix before anything starts, touches nothing).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import echo_overrides, trainer_config
from verl.trainer.main_ppo import run_ppo
from verl.utils.checkpoint import LATEST, STATE, read_trainer_state


def overrides(model: str, slots: Path, out: Path, **extra) -> list[str]:
    return echo_overrides(model, slots, out, trainer__save_freq=1, **{"trainer.logger": "[console,file]"}, **extra)


def cli(model: str, slots: Path, out: Path, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *overrides(model, slots, out, **extra)],
                          capture_output=True, text=True, cwd=out.parent, timeout=600)


def steps_in(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_checkpoints_and_metrics_survive_damage_fresh_starts_and_pruning(
        ray_cluster, tiny_model_dir, echo_slots, tmp_path):
    out = tmp_path / "run"
    run_ppo(trainer_config(overrides(tiny_model_dir, echo_slots, out, trainer__total_training_steps=3)))
    assert steps_in(out / "metrics.jsonl") == [1, 2, 3]

    # 1. the latest checkpoint lost its state file: resume falls back to step 2 and re-saves step 3
    (out / "global_step_3" / STATE).unlink()
    run = cli(tiny_model_dir, echo_slots, out, trainer__total_training_steps=3)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "incomplete" in run.stdout and "resuming from the newest complete checkpoint" in run.stdout
    assert "resumed from" in run.stdout and "at global step 2" in run.stdout
    assert steps_in(out / "metrics.jsonl") == [1, 2, 3]
    assert read_trainer_state(out / "global_step_3")["global_step"] == 3
    assert sorted(p.name for p in out.glob("*global_step_*")) == ["global_step_1", "global_step_2", "global_step_3"]

    # 2. a fresh start into the same folder keeping one checkpoint: its own step 1 survives the
    #    earlier run's higher steps, and the earlier metrics are moved aside, not truncated
    run = cli(tiny_model_dir, echo_slots, out, trainer__total_training_steps=1, trainer__resume_mode="disable",
              trainer__max_actor_ckpt_to_keep=1)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*global_step_*")) == ["global_step_1"]
    assert (out / LATEST).read_text() == "1" and read_trainer_state(out / "global_step_1")["save_index"] == 4
    (aside,) = out.glob("metrics.*.jsonl")
    assert steps_in(aside) == [1, 2, 3] and steps_in(out / "metrics.jsonl") == [1]

    # 3. the latest file points at a folder that is gone and nothing else is left: a clear stop
    shutil.rmtree(out / "global_step_1")
    (out / LATEST).write_text("7")
    run = cli(tiny_model_dir, echo_slots, out, trainer__total_training_steps=2)
    assert run.returncode == 2
    assert "could not start" in run.stderr and "global_step_7, which is missing" in run.stderr
    assert "trainer.resume_mode=disable" in run.stderr
    assert steps_in(out / "metrics.jsonl") == [1]
