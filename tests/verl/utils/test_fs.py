"""Atomic writes leave the old content on failure and no temporaries behind."""

from __future__ import annotations

import pytest

from verl.utils.fs import atomic_dir, atomic_path, write_text_atomic


def test_file_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in target.parent.iterdir()] == ["a.txt"]


def test_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as scratch:
        (scratch / "weights").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as scratch:
            (scratch / "weights").write_text("2")
            raise RuntimeError("crash")
    assert (target / "weights").read_text() == "1"
    with atomic_dir(target) as scratch:
        (scratch / "other").write_text("3")
    assert [p.name for p in target.iterdir()] == ["other"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        with atomic_dir(tmp_path / "file"):
            pass
