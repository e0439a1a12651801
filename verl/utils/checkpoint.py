"""Checkpoint folders on disk, written atomically.

Layout under ``trainer.default_local_dir``::

    global_step_N/actor/...        policy shards + optimizer + LR schedule + RNG (+ huggingface/)
    global_step_N/critic/...       (GAE only)
    global_step_N/trainer_state.json   step, dataloader position, curriculum, KL controller
    latest_checkpointed_iteration.txt  "N"

A save goes into a hidden temporary folder that is renamed to ``global_step_N`` only once every rank
has finished, and the ``latest`` file is replaced (temp file + rename) after that. A crash mid-save
therefore leaves at most a ``.tmp-*`` folder, which resume ignores and removes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from verl.utils.fs import write_text_atomic

LATEST = "latest_checkpointed_iteration.txt"
STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"^global_step_(\d+)$")


class CheckpointManager:
    def __init__(self, root: str, max_keep: int | None = None, max_critic_keep: int | None = None):
        """``max_keep``: newest step folders kept (``trainer.max_actor_ckpt_to_keep``); ``max_critic_keep``:
        newest folders that keep their ``critic/`` part (``trainer.max_critic_ckpt_to_keep``). None = all."""
        self.root = Path(root).expanduser().resolve()
        self.max_keep = max_keep
        self.max_critic_keep = max_critic_keep

    def step_dirs(self) -> list[tuple[int, Path]]:
        if not self.root.exists():
            return []
        found = [(int(m.group(1)), p) for p in self.root.iterdir() if (m := _STEP_DIR.match(p.name))]
        return sorted(found)

    def latest(self) -> Path | None:
        marker = self.root / LATEST
        if not marker.exists():
            return None
        step = marker.read_text().strip()
        path = self.root / f"global_step_{step}"
        return path if (path / STATE).exists() else None

    def resume_path(self, mode: str, resume_from_path: str | None) -> Path | None:
        """The checkpoint to resume from under ``trainer.resume_mode`` (auto | disable | resume_path)."""
        self.clean_partial_saves()
        if mode == "disable":
            return None
        if mode == "auto":
            return self.latest()
        if mode == "resume_path":
            if not resume_from_path:
                raise ValueError("trainer.resume_mode=resume_path needs trainer.resume_from_path=<.../global_step_N>")
            path = Path(resume_from_path).expanduser().resolve()
            if not _STEP_DIR.match(path.name) or not (path / STATE).exists():
                raise FileNotFoundError(f"trainer.resume_from_path={path} is not a complete checkpoint folder "
                                        f"(expected .../global_step_N containing {STATE})")
            return path
        raise ValueError(f"trainer.resume_mode={mode!r}; use auto, disable or resume_path")

    def clean_partial_saves(self) -> None:
        if self.root.exists():
            for p in self.root.glob(".tmp-global_step_*"):
                shutil.rmtree(p, ignore_errors=True)

    def begin(self, step: int) -> Path:
        """A fresh temporary folder for the workers to write step ``step`` into."""
        tmp = self.root / f".tmp-global_step_{step}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        return tmp

    def commit(self, tmp: Path, step: int, trainer_state: dict[str, Any]) -> Path:
        write_text_atomic(tmp / STATE, json.dumps(trainer_state, indent=1))
        final = self.root / f"global_step_{step}"
        if final.exists():  # re-saving a step (e.g. after a resume): replace it whole
            shutil.rmtree(final)
        os.replace(tmp, final)
        write_text_atomic(self.root / LATEST, str(step))
        self._prune()
        return final

    def _prune(self) -> None:
        if self.max_keep and self.max_keep > 0:
            for _, path in self.step_dirs()[: -self.max_keep]:
                shutil.rmtree(path, ignore_errors=True)
        if self.max_critic_keep and self.max_critic_keep > 0:
            for _, path in self.step_dirs()[: -self.max_critic_keep]:
                shutil.rmtree(path / "critic", ignore_errors=True)


def read_trainer_state(path: Path) -> dict[str, Any]:
    return json.loads((path / STATE).read_text())
