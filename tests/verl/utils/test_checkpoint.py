"""Checkpoint folders: atomic commits, partial saves ignored, resume modes, pruning."""

from __future__ import annotations

import pytest

from verl.utils.checkpoint import LATEST, CheckpointManager, read_trainer_state


def save(mgr: CheckpointManager, step: int) -> None:
    tmp = mgr.begin(step)
    (tmp / "actor").mkdir()
    (tmp / "actor" / "weights").write_text(str(step))
    mgr.commit(tmp, step, {"global_step": step})


def test_commit_renames_and_points_latest(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    assert mgr.latest() is None
    save(mgr, 2)
    assert mgr.latest() == (tmp_path / "global_step_2").resolve()
    assert (tmp_path / LATEST).read_text() == "2"
    assert read_trainer_state(mgr.latest()) == {"global_step": 2}
    assert not list(tmp_path.glob(".tmp-*"))


def test_crash_mid_save_is_never_picked_and_is_cleaned(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1)
    half = mgr.begin(2)  # a save that died before commit
    (half / "actor").mkdir()
    assert mgr.resume_path("auto", None) == (tmp_path / "global_step_1").resolve()
    assert not half.exists()


def test_latest_marker_without_a_complete_folder_is_ignored(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    (tmp_path / "global_step_3").mkdir(parents=True)
    (tmp_path / LATEST).write_text("3")
    assert mgr.latest() is None


def test_resume_modes(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1)
    save(mgr, 2)
    assert mgr.resume_path("disable", None) is None
    assert mgr.resume_path("resume_path", str(tmp_path / "global_step_1")).name == "global_step_1"
    with pytest.raises(ValueError, match="resume_from_path"):
        mgr.resume_path("resume_path", None)
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        mgr.resume_path("resume_path", str(tmp_path / "global_step_9"))
    with pytest.raises(ValueError, match="auto, disable or resume_path"):
        mgr.resume_path("sometimes", None)


def test_keeps_only_the_newest(tmp_path):
    mgr = CheckpointManager(str(tmp_path), max_keep=2)
    for step in (1, 2, 3):
        save(mgr, step)
    assert [p.name for _, p in mgr.step_dirs()] == ["global_step_2", "global_step_3"]


def test_critic_parts_are_pruned_separately(tmp_path):
    mgr = CheckpointManager(str(tmp_path), max_keep=3, max_critic_keep=1)
    for step in (1, 2, 3):
        tmp = mgr.begin(step)
        (tmp / "critic").mkdir()
        mgr.commit(tmp, step, {"global_step": step})
    assert [(p / "critic").exists() for _, p in mgr.step_dirs()] == [False, False, True]


def test_resaving_a_step_replaces_it(tmp_path):
    mgr = CheckpointManager(str(tmp_path))
    save(mgr, 1)
    save(mgr, 1)
    assert (tmp_path / "global_step_1" / "actor" / "weights").read_text() == "1"
