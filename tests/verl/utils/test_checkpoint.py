"""Checkpoint folders: atomic commits, crash recovery, resume fallbacks and pruning by save order."""

from __future__ import annotations

import os
import shutil

import pytest

from verl.utils.checkpoint import LATEST, STATE, CheckpointError, CheckpointManager, read_trainer_state


def save(mgr: CheckpointManager, step: int, weights: str | None = None) -> None:
    tmp = mgr.begin(step)
    (tmp / "actor").mkdir()
    (tmp / "actor" / "weights").write_text(weights or str(step))
    mgr.commit(tmp, step, {"global_step": step})


def weights(mgr: CheckpointManager, step: int) -> str:
    return (mgr.root / f"global_step_{step}" / "actor" / "weights").read_text()


def test_commit_renames_and_points_latest(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    assert mgr.latest() is None and mgr.resume_path("auto", None) is None
    save(mgr, 2)
    assert mgr.latest() == (tmp_path / "global_step_2").resolve()
    assert (tmp_path / LATEST).read_text() == "2"
    assert read_trainer_state(mgr.latest()) == {"global_step": 2, "save_index": 1}
    assert not list(tmp_path.glob(".tmp-*"))


def test_crash_mid_save_is_never_picked_and_is_cleaned(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1)
    half = mgr.begin(2)  # a save that died before commit
    (half / "actor").mkdir()
    assert mgr.resume_path("auto", None) == (tmp_path / "global_step_1").resolve()
    assert not half.exists()


def test_resume_modes(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1)
    save(mgr, 2)
    assert mgr.resume_path("disable", None) is None
    assert mgr.resume_path("resume_path", str(tmp_path / "global_step_1")).name == "global_step_1"
    with pytest.raises(CheckpointError, match="resume_from_path"):
        mgr.resume_path("resume_path", None)
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        mgr.resume_path("resume_path", str(tmp_path / "global_step_9"))
    with pytest.raises(CheckpointError, match="auto, disable or resume_path"):
        mgr.resume_path("sometimes", None)


# ------------------------------------------------------------------ latest file pointing nowhere


@pytest.mark.parametrize("damage", ["missing", "incomplete", "garbage", "no_marker"])
def test_a_bad_latest_file_falls_back_to_the_newest_complete_checkpoint(tmp_path, capsys, damage):
    mgr = CheckpointManager(str(tmp_path))
    for step in (1, 2, 3):
        save(mgr, step)
    if damage == "missing":
        shutil.rmtree(tmp_path / "global_step_3")
    elif damage == "incomplete":
        (tmp_path / "global_step_3" / STATE).unlink()
    elif damage == "garbage":
        (tmp_path / LATEST).write_text("three")
        shutil.rmtree(tmp_path / "global_step_3")
    else:
        (tmp_path / LATEST).unlink()
        shutil.rmtree(tmp_path / "global_step_3")
    assert mgr.resume_path("auto", None) == (tmp_path / "global_step_2").resolve()
    printed = capsys.readouterr().out
    assert "resuming from the newest complete checkpoint" in printed and "global_step_2" in printed


def test_a_bad_latest_file_with_nothing_to_fall_back_to_stops_with_the_fix(tmp_path):
    (tmp_path / "global_step_3").mkdir()
    (tmp_path / LATEST).write_text("3")
    mgr = CheckpointManager(str(tmp_path))
    assert mgr.latest() is None
    with pytest.raises(CheckpointError, match="incomplete.*resume_mode=disable"):
        mgr.resume_path("auto", None)
    shutil.rmtree(tmp_path / "global_step_3")
    with pytest.raises(CheckpointError, match="missing.*no other complete checkpoint"):
        mgr.resume_path("auto", None)


# ----------------------------------------------------------------------------------- pruning


def test_keeps_only_the_newest(tmp_path):
    mgr = CheckpointManager(str(tmp_path), max_keep=2)
    for step in (1, 2, 3):
        save(mgr, step)
    assert [p.name for _, p in mgr.step_dirs()] == ["global_step_2", "global_step_3"]


def test_pruning_keeps_this_runs_saves_over_higher_steps_of_an_earlier_run(tmp_path):
    earlier = CheckpointManager(str(tmp_path))
    for step in (1, 2, 3, 4, 5):
        save(earlier, step, weights="earlier")
    mgr = CheckpointManager(str(tmp_path), max_keep=2)  # a fresh start into the same folder
    save(mgr, 1, weights="fresh")
    assert weights(mgr, 1) == "fresh" and (tmp_path / LATEST).read_text() == "1"
    assert [c.step for c in mgr.checkpoints()] == [5, 1]  # the newest save of the earlier run, then ours
    save(mgr, 2, weights="fresh")
    assert [c.step for c in mgr.checkpoints()] == [1, 2] and weights(mgr, 2) == "fresh"
    assert mgr.resume_path("auto", None) == (tmp_path / "global_step_2").resolve()


def test_after_a_resume_to_an_earlier_step_newest_means_saved_last(tmp_path, capsys):
    mgr = CheckpointManager(str(tmp_path))
    for step in (1, 2, 3):
        save(mgr, step, weights="first")
    assert mgr.resume_path("resume_path", str(tmp_path / "global_step_1")).name == "global_step_1"
    save(mgr, 2, weights="second")  # the rewound run re-saves step 2; step 3 is the earlier run's
    assert [(c.step, c.save_index) for c in mgr.checkpoints()] == [(1, 1), (3, 3), (2, 4)]
    (tmp_path / LATEST).unlink()
    assert mgr.resume_path("auto", None) == (tmp_path / "global_step_2").resolve()
    assert weights(mgr, 2) == "second"


def test_critic_parts_are_pruned_separately(tmp_path):
    mgr = CheckpointManager(str(tmp_path), max_keep=3, max_critic_keep=1)
    for step in (1, 2, 3):
        tmp = mgr.begin(step)
        (tmp / "critic").mkdir()
        mgr.commit(tmp, step, {"global_step": step})
    assert [(p / "critic").exists() for _, p in mgr.step_dirs()] == [False, False, True]


# ---------------------------------------------------------------- re-saving a step, with crashes


class Crash(Exception):
    """Stands for the process dying at this point."""


def commit_that_crashes(monkeypatch, mgr: CheckpointManager, step: int, at_call: int) -> bool:
    """Re-save ``step`` with new weights, failing the ``at_call``-th rename or delete; True if it crashed."""
    tmp = mgr.begin(step)
    (tmp / "actor").mkdir()
    (tmp / "actor" / "weights").write_text("new")
    calls = 0

    def failing(real):
        def wrapper(*args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == at_call:
                raise Crash
            return real(*args, **kwargs)
        return wrapper

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", failing(os.replace))
        patch.setattr(shutil, "rmtree", failing(shutil.rmtree))
        try:
            mgr.commit(tmp, step, {"global_step": step})
        except Crash:
            return True
    return False


def test_resaving_a_step_replaces_it(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1, weights="old")
    save(mgr, 1, weights="new")
    assert weights(mgr, 1) == "new" and not list(tmp_path.glob(".old-*"))


@pytest.mark.parametrize("at_call", range(1, 7))
def test_a_crash_at_any_point_of_a_resave_leaves_one_complete_copy(tmp_path, monkeypatch, at_call):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1)
    save(mgr, 2, weights="old")
    crashed = commit_that_crashes(monkeypatch, mgr, 2, at_call)
    assert crashed == (at_call <= 5)  # a re-save renames or deletes five times
    restarted = CheckpointManager(str(tmp_path))
    path = restarted.resume_path("auto", None)  # recovery runs first
    assert path == (tmp_path / "global_step_2").resolve()
    assert weights(restarted, 2) == ("old" if at_call <= 3 else "new")  # until the new copy is renamed in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["global_step_1", "global_step_2", LATEST]
