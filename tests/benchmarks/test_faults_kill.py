"""The kill -9 harness of benchmarks/faults_kill.py on the real CLI: one kill during a checkpoint save."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.faults_kill import RESUMED, RunFolder, echo_args, kill_session, session_pids, start, wait_for_anchor


def test_kill_9_of_the_whole_run_during_a_save_then_resume_completes_with_every_row_once(
        tiny_model_dir, echo_slots, tmp_path):
    out = tmp_path / "run"
    args = echo_args(Path(tiny_model_dir), echo_slots, out, total_steps=2)
    folder = RunFolder(out)
    proc = start(args, tmp_path / "killed.log")
    while folder.committed() < 1 and proc.poll() is None:
        time.sleep(0.01)
    step = wait_for_anchor(proc, folder, "save", skip=0, timeout_s=600)  # the save of step 2 has begun
    kill_session(proc)
    assert step == 2, (tmp_path / "killed.log").read_text()[-2000:]
    assert session_pids(proc.pid) == []  # driver, Ray head and workers: all gone
    assert folder.committed() == 1

    resumed = start(args, tmp_path / "resumed.log")
    assert resumed.wait(timeout=600) == 0, (tmp_path / "resumed.log").read_text()[-2000:]
    found = RESUMED.search((tmp_path / "resumed.log").read_text())
    assert found and found.group(1).endswith("global_step_1") and found.group(2) == "1"
    assert [row["step"] for row in folder.rows()] == [1, 2] and folder.committed() == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # the partial save is gone
