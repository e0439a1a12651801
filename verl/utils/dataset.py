"""Task-slot datasets: parquet rows that tell the environments which tasks to play.

A row is one task. Its ``env_kwargs`` (a dict, possibly empty; e.g. the question and gold answers of a
Search-QA task) is handed to the environment manager's ``reset``. Environments that draw their own tasks
(ALFWorld games) use placeholder rows; the trainer adds a per-task seed so draws are reproducible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _as_dict(value: Any) -> dict[str, Any]:
    """A row's ``env_kwargs``: a struct (dict), a Parquet map (list of key/value pairs) or null."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return {}
    if isinstance(value, (list, tuple, np.ndarray)):  # Parquet maps come back as (key, value) pairs
        value = dict(value)
    if isinstance(value, dict):
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in value.items()}
    raise ValueError(f"env_kwargs must be a dict per row, got {type(value).__name__}")


_REWRITE_FIX = ("Fix: write the task slots again with examples/data_preprocess/prepare.py (ALFWorld, echo) or "
                "examples/data_preprocess/preprocess_search_r1_dataset.py (Search)")


def _read_parquet(path: Path, key: str) -> pd.DataFrame:
    """``pd.read_parquet`` whose errors (truncated file, not parquet at all) name the config key and the fix."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise ValueError(f"{key}: {path} is not a readable parquet file ({err}). {_REWRITE_FIX}") from err


def load_task_slots(files: str | list[str], key: str) -> list[dict[str, Any]]:
    """Read parquet file(s) into a list of ``env_kwargs`` dicts (``data_source`` added when present)."""
    paths = [files] if isinstance(files, str) else list(files)
    if not paths:
        raise ValueError(f"{key} is empty; give one or more parquet files")
    tasks: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"{key}: {path} does not exist. Create task slots first, e.g. `python "
                "examples/data_preprocess/prepare.py --mode text --local_dir ~/data/verl-agent` (ALFWorld) or "
                "`python examples/data_preprocess/preprocess_search_r1_dataset.py --local_dir ...` (Search)")
        frame = _read_parquet(path, key)
        for number, (_, row) in enumerate(frame.iterrows()):
            try:
                kw = _as_dict(row["env_kwargs"]) if "env_kwargs" in frame.columns else {}
            except ValueError as err:
                raise ValueError(f"{key}: {path} row {number}: {err}. {_REWRITE_FIX}") from err
            if "data_source" in frame.columns and "data_source" not in kw:
                kw["data_source"] = row["data_source"]
            tasks.append(kw)
    if not tasks:
        raise ValueError(f"{key}: {paths} hold no rows. {_REWRITE_FIX}")
    return tasks


class TaskSlotLoader:
    """Endless, resumable batches of task slots: a fresh seeded permutation every epoch, drop_last."""

    def __init__(self, tasks: list[dict[str, Any]], batch_size: int, shuffle: bool, seed: int):
        if len(tasks) < batch_size:
            raise ValueError(f"data.train_batch_size={batch_size} exceeds the {len(tasks)} training task slots; "
                             "lower data.train_batch_size or write more slots (prepare.py --train_data_size)")
        self.tasks = tasks
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.position = 0  # batches already taken in this epoch

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.tasks) // self.batch_size

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.tasks))
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.tasks))

    def next_batch(self) -> list[dict[str, Any]]:
        if self.position >= len(self):
            self.epoch += 1
            self.position = 0
        start = self.position * self.batch_size
        rows = self._order()[start: start + self.batch_size]
        self.position += 1
        return [self.tasks[i] for i in rows]

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
