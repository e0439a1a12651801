"""Where SkillZero keeps things on disk, and atomic writes.

Locations: the cache (``$SKILLZERO_CACHE`` or ``~/.cache/skillzero``: converted models, unpacked games,
indexes) and the read-only shared test data (``$SKILLZERO_SHARED_DATA`` or ``<repo>/../shared/data``).

Atomic writes: readers see the old file (or folder) or the complete new one, never a partial one.
Everything is written to a temporary name in the target's own folder (same filesystem) and then moved
into place with one ``os.replace``; a failure removes the temporary and leaves the target untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_ENV = "SKILLZERO_CACHE"
SHARED_DATA_ENV = "SKILLZERO_SHARED_DATA"


def cache_dir() -> Path:
    """``$SKILLZERO_CACHE`` or ``~/.cache/skillzero`` (not created here)."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "skillzero"


def shared_data_dir() -> Path:
    """``$SKILLZERO_SHARED_DATA``, else ``<repo root>/../shared/data`` (read-only test data)."""
    return Path(os.environ.get(SHARED_DATA_ENV) or REPO_ROOT.parent / "shared" / "data")


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary file path beside ``path``; renamed onto ``path`` when the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; give the usual permissions of a new file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """A scratch folder beside ``target`` that replaces it (whole) when the block succeeds."""
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; pass a folder path")
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    retired = None
    if target.exists():
        retired = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, retired / target.name)
    os.replace(scratch, target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
