"""Checkpoint folders on disk: atomic saves, recovery after a crash, resume and pruning.

Layout under ``trainer.default_local_dir``::

    global_step_N/actor/...        policy shards + optimizer + LR schedule + RNG (+ huggingface/)
    global_step_N/critic/...       (GAE only)
    global_step_N/trainer_state.json   step, dataloader position, curriculum, KL controller, save_index
    latest_checkpointed_iteration.txt  "N"

**Saving.** The workers write into a hidden ``.tmp-global_step_N-*`` folder; the driver then writes
``trainer_state.json`` into it (a folder holding that file is *complete*), renames it to
``global_step_N`` and replaces the ``latest`` file (temp file + rename). Re-saving a step that exists
first renames the old folder aside (``.old-global_step_N-*``), renames the new one in and deletes the
old one last, so a crash at any point leaves one complete copy of the step; :meth:`recover` (run before
every resume) puts a stranded old copy back and deletes partial saves.

**Which save is newest.** Every save gets ``save_index`` = 1 + the highest index in the folder, so
"newest" means "saved last", not "highest step": after a fresh start or a resume to an earlier step the
folder may hold higher step numbers from an earlier run. Pruning (``max_keep``) keeps the newest saves
and so never removes the one just committed.

**Resuming** (``trainer.resume_mode=auto``) follows the ``latest`` file. When it is missing or points at
a missing or incomplete folder, resume falls back to the newest complete checkpoint and says so; with no
complete checkpoint left it stops with an error rather than silently starting from step 0.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verl.utils.fs import write_text_atomic

LATEST = "latest_checkpointed_iteration.txt"
STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")
_TMP_PREFIX = ".tmp-global_step_"
_OLD_DIR = re.compile(r"^\.old-global_step_(\d+)-[0-9a-f]+$")


class CheckpointError(ValueError):
    """The checkpoint folder cannot be resumed as configured; the message names the fix."""


@dataclass(frozen=True)
class Checkpoint:
    """A complete ``global_step_N`` folder."""

    step: int
    path: Path
    save_index: int  # order of saving (0 for folders written before save indices existed)


def read_trainer_state(path: Path) -> dict[str, Any]:
    return json.loads((path / STATE).read_text())


def _state_or_none(path: Path) -> dict[str, Any] | None:
    """The folder's trainer state, or None when the folder is incomplete (no or unreadable state file)."""
    try:
        state = read_trainer_state(path)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


class CheckpointManager:
    def __init__(self, root: str, max_keep: int | None = None, max_critic_keep: int | None = None):
        """``max_keep``: newest saves kept (``trainer.max_actor_ckpt_to_keep``); ``max_critic_keep``: newest
        saves that keep their ``critic/`` part (``trainer.max_critic_ckpt_to_keep``). None or 0 = all."""
        self.root = Path(root).expanduser().resolve()
        self.max_keep = max_keep
        self.max_critic_keep = max_critic_keep

    # ------------------------------------------------------------------------------- reading
    def step_dirs(self) -> list[tuple[int, Path]]:
        """Every ``global_step_N`` folder (complete or not), by step."""
        if not self.root.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name))]
        return sorted(found)

    def checkpoints(self) -> list[Checkpoint]:
        """The complete checkpoints, oldest save first."""
        found = []
        for step, path in self.step_dirs():
            state = _state_or_none(path)
            if state is not None:
                found.append(Checkpoint(step, path, int(state.get("save_index", 0))))
        return sorted(found, key=lambda c: (c.save_index, c.step))

    def latest(self) -> Path | None:
        """The folder the ``latest`` file names, if it is a complete checkpoint."""
        marker = self.root / LATEST
        if not marker.exists():
            return None
        step = marker.read_text().strip()
        path = self.root / f"global_step_{step}"
        return path if step.isdigit() and _state_or_none(path) is not None else None

    # ------------------------------------------------------------------------------- resuming
    def resume_path(self, mode: str, resume_from_path: str | None) -> Path | None:
        """The checkpoint to resume from under ``trainer.resume_mode`` (auto | disable | resume_path)."""
        self.recover()
        if mode == "disable":
            return None
        if mode == "auto":
            return self._auto_resume_path()
        if mode == "resume_path":
            if not resume_from_path:
                raise CheckpointError(
                    "trainer.resume_mode=resume_path needs trainer.resume_from_path=<.../global_step_N>")
            path = Path(resume_from_path).expanduser().resolve()
            if not _STEP_DIR.match(path.name) or _state_or_none(path) is None:
                raise CheckpointError(f"trainer.resume_from_path={path} is not a complete checkpoint folder "
                                      f"(expected .../global_step_N containing {STATE})")
            return path
        raise CheckpointError(f"trainer.resume_mode={mode!r}; use auto, disable or resume_path")

    def _auto_resume_path(self) -> Path | None:
        latest = self.latest()
        if latest is not None:
            return latest
        marker = self.root / LATEST
        complete = self.checkpoints()
        if not marker.exists() and not complete:
            return None  # a fresh folder
        if marker.exists():
            named = marker.read_text().strip()
            folder = self.root / f"global_step_{named}"
            problem = (f"{marker} names {named!r}, which is not a step number" if not named.isdigit() else
                       f"{marker} points at {folder}, which is missing" if not folder.exists() else
                       f"{marker} points at {folder}, which is incomplete (no readable {STATE})")
        else:
            problem = f"{self.root} holds checkpoints but no {LATEST}"
        if not complete:
            raise CheckpointError(
                f"{problem}, and no other complete checkpoint is left to resume from. Start from step 0 with "
                "trainer.resume_mode=disable (metrics already in the folder are kept), or pick a checkpoint with "
                "trainer.resume_mode=resume_path trainer.resume_from_path=<.../global_step_N>")
        newest = complete[-1]
        print(f"{problem}; resuming from the newest complete checkpoint, {newest.path}", flush=True)
        return newest.path

    def recover(self) -> None:
        """Undo what a crash mid-save left behind: put back an old copy stranded by a re-save whose new
        copy never arrived, delete old copies that were replaced, and delete partial saves."""
        if not self.root.exists():
            return
        for old in sorted(self.root.iterdir()):
            if not (m := _OLD_DIR.match(old.name)):
                continue
            final = self.root / f"global_step_{m.group(1)}"
            if _state_or_none(final) is None:
                if final.exists():
                    shutil.rmtree(final)
                os.replace(old, final)
            else:
                shutil.rmtree(old, ignore_errors=True)
        for partial in self.root.glob(f"{_TMP_PREFIX}*"):
            shutil.rmtree(partial, ignore_errors=True)

    # -------------------------------------------------------------------------------- saving
    def begin(self, step: int) -> Path:
        """A fresh temporary folder for the workers to write step ``step`` into."""
        tmp = self.root / f"{_TMP_PREFIX}{step}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, step: int, trainer_state: dict[str, Any]) -> Path:
        """Make the save in ``tmp`` the checkpoint of ``step`` (see the module docstring), then prune."""
        save_index = 1 + max((c.save_index for c in self.checkpoints()), default=0)
        write_text_atomic(tmp / STATE, json.dumps({**trainer_state, "save_index": save_index}, indent=1))
        final = self.root / f"global_step_{step}"
        old = None
        if final.exists():  # re-saving a step (e.g. after a resume to an earlier step)
            old = self.root / f".old-global_step_{step}-{uuid.uuid4().hex[:8]}"
            os.replace(final, old)
        os.replace(tmp, final)
        write_text_atomic(self.root / LATEST, str(step))
        if old is not None:
            shutil.rmtree(old)
        self._prune()
        return final

    def _prune(self) -> None:
        newest_last = self.checkpoints()
        if self.max_keep and self.max_keep > 0:
            for checkpoint in newest_last[: -self.max_keep]:
                shutil.rmtree(checkpoint.path, ignore_errors=True)
        if self.max_critic_keep and self.max_critic_keep > 0:
            for checkpoint in newest_last[: -self.max_critic_keep]:
                shutil.rmtree(checkpoint.path / "critic", ignore_errors=True)
