"""Machines tasks: generated from seeds, with train / val / test disjoint by construction.

A task is a machine type, two surface words (an adjective and a room) and the display order of the five
buttons: 4 x 10 x 10 x 120 = 48,000 tasks. Which split a task belongs to is a fixed function of the
task itself (a hash: 80 % train, 10 % val, 10 % test), so no seed can put a task in two splits.
:func:`make_tasks` draws distinct tasks of one split, machine types in turn (balanced categories).

Task slots for the trainer (one parquet row per task; ``env_kwargs`` holds the task)::

    python -m agent_system.environments.env_package.machines.tasks --local_dir ~/data/machines \\
        [--train 256] [--val 32] [--test 64] [--seed 0]
    # -> ~/data/machines/{train,val,test}.parquet
"""

from __future__ import annotations

import argparse
import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agent_system.environments.categories import MACHINE_TYPES
from agent_system.environments.env_package.machines.envs import BUTTONS, MachineTask
from verl.utils.fs import atomic_path

ADJECTIVES: tuple[str, ...] = ("old", "small", "rusty", "new", "large", "quiet", "shiny", "dusty", "heavy", "tiny")
ROOMS: tuple[str, ...] = ("kitchen", "garage", "cellar", "lab", "barn", "office", "attic", "shed", "basement", "workshop")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_OF_BUCKET = ("train",) * 8 + ("val", "test")  # hash bucket (mod 10) -> split
DATA_SOURCE = "machines"
_KWARGS = ("machine", "adjective", "room", "buttons")


def task_split(task: MachineTask) -> str:
    """The split ``task`` belongs to: a fixed hash of the task (80 % train, 10 % val, 10 % test)."""
    key = "|".join((task.machine, task.adjective, task.room, " ".join(task.buttons)))
    return _SPLIT_OF_BUCKET[int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") % 10]


def make_tasks(split: str, n: int, seed: int = 0) -> list[MachineTask]:
    """``n`` distinct tasks of ``split``, machine types in turn, drawn reproducibly from ``seed``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    capacity = len(MACHINE_TYPES) * len(ADJECTIVES) * len(ROOMS) * 120 // 20  # half a 10 % split: draws stay fast
    if not 1 <= n <= capacity:
        raise ValueError(f"ask for between 1 and {capacity} {split} tasks, got {n}")
    rng = random.Random(f"machines/{split}/{seed}")
    tasks: list[MachineTask] = []
    seen: set[MachineTask] = set()
    while len(tasks) < n:
        buttons = list(BUTTONS)
        rng.shuffle(buttons)
        task = MachineTask(MACHINE_TYPES[len(tasks) % len(MACHINE_TYPES)], rng.choice(ADJECTIVES), rng.choice(ROOMS),
                           tuple(buttons))
        if task not in seen and task_split(task) == split:
            seen.add(task)
            tasks.append(task)
    return tasks


def task_to_kwargs(task: MachineTask) -> dict[str, str]:
    return {"machine": task.machine, "adjective": task.adjective, "room": task.room, "buttons": " ".join(task.buttons)}


def task_from_kwargs(kwargs: Mapping[str, Any]) -> MachineTask:
    """The task of a reset kwargs dict (a task slot's ``env_kwargs``); a clear error when it is not one."""
    missing = [key for key in _KWARGS if not isinstance(kwargs.get(key), str)]
    if missing:
        raise ValueError(
            f"a machines task slot needs the string fields {', '.join(_KWARGS)} in env_kwargs (missing or not a "
            f"string: {', '.join(missing)}; got {dict(kwargs)!r}). Write task slots with: python -m "
            "agent_system.environments.env_package.machines.tasks --local_dir DIR")
    return MachineTask(kwargs["machine"], kwargs["adjective"], kwargs["room"], tuple(kwargs["buttons"].split()))


_SCHEMA = pa.schema([
    ("data_source", pa.string()),
    ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
    ("ability", pa.string()),
    ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64())])),
    ("env_kwargs", pa.struct([(key, pa.string()) for key in _KWARGS])),
])


def write_task_slots(tasks: list[MachineTask], split: str, path: Path) -> None:
    """One parquet row per task (verl-agent task-slot layout), written atomically."""
    table = pa.table({
        "data_source": [DATA_SOURCE] * len(tasks),
        "prompt": [[{"role": "user", "content": ""}] for _ in tasks],
        "ability": ["agent"] * len(tasks),
        "extra_info": [{"split": split, "index": i} for i in range(len(tasks))],
        "env_kwargs": [task_to_kwargs(task) for task in tasks],
    }, schema=_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description="Write machines task slots: train.parquet, val.parquet, test.parquet")
    parser.add_argument("--local_dir", required=True, help="output folder")
    parser.add_argument("--train", type=int, default=256, help="training tasks")
    parser.add_argument("--val", type=int, default=32, help="validation tasks (data.val_files)")
    parser.add_argument("--test", type=int, default=64, help="final-test tasks (data.test_files)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (splits stay disjoint for any seed)")
    args = parser.parse_args(argv)
    out = Path(args.local_dir).expanduser()
    written = {}
    for split in SPLITS:
        try:
            tasks = make_tasks(split, getattr(args, split), args.seed)
        except ValueError as err:
            parser.error(f"--{split}: {err}")
        written[split] = out / f"{split}.parquet"
        write_task_slots(tasks, split, written[split])
        print(f"wrote {len(tasks)} {split} tasks to {written[split]}")
    return written


if __name__ == "__main__":
    main()
