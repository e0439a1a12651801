"""Loggers (file, tensorboard, wandb offline) and the resumable task-slot loader."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from verl.utils.dataset import TaskSlotLoader, load_task_slots
from verl.utils.tracking import Tracking


def test_file_logger_writes_json_lines_and_drops_lines_past_the_resume_step(tmp_path):
    t = Tracking(["file"], "p", "e", {}, str(tmp_path))
    for step in range(1, 5):
        t.log({"loss": step / 10, "bad": float("nan")}, step=step)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[0]["bad"] is None
    Tracking(["file"], "p", "e", {}, str(tmp_path), resume_step=2)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


def steps_in(path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_a_fresh_start_moves_earlier_metrics_aside_instead_of_truncating_them(tmp_path, capsys):
    first = Tracking(["file"], "p", "e", {}, str(tmp_path))
    for step in (0, 1, 2):
        first.log({"loss": 1.0}, step=step)
    second = Tracking(["file"], "p", "e", {}, str(tmp_path))  # no checkpoint resumed: a new run history
    second.log({"loss": 2.0}, step=1)
    (aside,) = tmp_path.glob("metrics.*.jsonl")
    assert steps_in(aside) == [0, 1, 2] and steps_in(tmp_path / "metrics.jsonl") == [1]
    assert f"moved to {aside}" in capsys.readouterr().out
    Tracking(["file"], "p", "e", {}, str(tmp_path))  # and again: the second history is kept beside the first
    assert sorted(steps_in(p) for p in tmp_path.glob("metrics.*.jsonl")) == [[0, 1, 2], [1]]


def test_resume_restores_the_row_of_a_step_killed_between_its_save_and_its_row(tmp_path, capsys):
    """kill -9 after the checkpoint of step 2 was committed but before its row was written (found by
    benchmarks/faults_kill.py): resume from step 2 writes the row saved with the checkpoint, once."""
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 0.5}\n')
    Tracking(["file"], "p", "e", {}, str(tmp_path), resume_step=2, resume_row={"loss": 0.25})
    assert [json.loads(line) for line in path.read_text().splitlines()] == [{"step": 1, "loss": 0.5},
                                                                            {"step": 2, "loss": 0.25}]
    assert "restored the metrics row of step 2" in capsys.readouterr().out
    Tracking(["file"], "p", "e", {}, str(tmp_path), resume_step=2, resume_row={"loss": 0.25})  # row there: kept
    assert steps_in(path) == [1, 2]


def test_resume_drops_a_torn_last_line_and_names_any_other_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    Tracking(["file"], "p", "e", {}, str(tmp_path), resume_step=5)
    assert steps_in(path) == [1, 2]
    path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2 is not a JSON object"):
        Tracking(["file"], "p", "e", {}, str(tmp_path), resume_step=5)


def test_tensorboard_and_offline_wandb_write_their_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("TENSORBOARD_DIR", raising=False)
    t = Tracking(["tensorboard", "wandb"], "proj", "exp", {"a": 1}, str(tmp_path))
    t.log({"loss": 0.5, "name": "x"}, step=1)
    t.loggers[1].run.finish()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def test_unknown_logger_names_the_choices(tmp_path):
    with pytest.raises(ValueError, match="console"):
        Tracking(["mlflowx"], "p", "e", {}, str(tmp_path))


def write_slots(path, n):
    pd.DataFrame({"data_source": ["echo"] * n, "env_kwargs": [{"word": f"w{i}"} for i in range(n)]}).to_parquet(path)


def test_loader_is_seeded_resumable_and_wraps_epochs(tmp_path):
    write_slots(tmp_path / "t.parquet", 10)
    tasks = load_task_slots(str(tmp_path / "t.parquet"), "data.train_files")
    assert tasks[0] == {"word": "w0", "data_source": "echo"}
    a = TaskSlotLoader(tasks, 4, shuffle=True, seed=3)
    batches = [a.next_batch() for _ in range(3)]  # 2 batches per epoch: the third starts epoch 1
    assert a.epoch == 1
    b = TaskSlotLoader(tasks, 4, shuffle=True, seed=3)
    b.next_batch()
    c = TaskSlotLoader(tasks, 4, shuffle=True, seed=3)
    c.load_state_dict(b.state_dict())
    assert c.next_batch() == batches[1] and c.next_batch() == batches[2]


def test_loader_errors_name_the_key_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="data.train_files.*prepare.py"):
        load_task_slots(str(tmp_path / "missing.parquet"), "data.train_files")
    write_slots(tmp_path / "t.parquet", 2)
    with pytest.raises(ValueError, match="data.train_batch_size"):
        TaskSlotLoader(load_task_slots(str(tmp_path / "t.parquet"), "k"), 4, True, 0)
