"""Placeholder task slots for environments that pick their own tasks (ALFWorld, the echo toy env).

    python examples/data_preprocess/prepare.py --mode text --train_data_size 256 --val_data_size 256 \\
        --local_dir ~/data/verl-agent [--env alfworld]

writes ``<local_dir>/<mode>/train.parquet`` and ``<local_dir>/<mode>/test.parquet`` (verl-agent layout).
Each row is one task slot: the trainer turns a batch of rows into envs and the env itself picks the
game (from the reset seed in training; validation plays as many distinct games of the evaluation split as
there are test rows, the final test every game once), so the rows carry no task content::

    {"data_source": <env>, "prompt": [{"role": "user", "content": ""}], "ability": "agent",
     "extra_info": {"split": "train"|"test", "index": i}, "env_kwargs": {}}

``--mode visual`` adds an ``images`` column (an empty image list per row) for the visual-context mode.
``env_kwargs`` is stored as an empty Parquet map (Parquet cannot store a struct without fields), which
pyarrow and pandas read back as an empty list of (key, value) pairs: ``dict(row["env_kwargs"]) == {}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from verl.utils.fs import atomic_path

SPLITS = (("train", "train_data_size"), ("test", "val_data_size"))

_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # the Hugging Face image layout
SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("extra_info", pa.struct([("split", pa.string()), ("index", pa.int64())])),
        ("env_kwargs", pa.map_(pa.string(), pa.string())),
    ]
)
VISUAL_SCHEMA = SCHEMA.append(pa.field("images", pa.list_(_IMAGE)))


def task_slots(env: str, split: str, size: int, visual: bool) -> pa.Table:
    """``size`` placeholder rows for ``split``."""
    if size < 1:
        raise ValueError(f"{split} data size must be >= 1, got {size}")
    columns = {
        "data_source": [env] * size,
        "prompt": [[{"role": "user", "content": ""}] for _ in range(size)],
        "ability": ["agent"] * size,
        "extra_info": [{"split": split, "index": i} for i in range(size)],
        "env_kwargs": [[] for _ in range(size)],
    }
    if visual:
        columns["images"] = [[] for _ in range(size)]
    return pa.table(columns, schema=VISUAL_SCHEMA if visual else SCHEMA)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("text", "visual"), default="text")
    parser.add_argument("--env", default="alfworld", help="data_source of every row (alfworld, echo, ...)")
    parser.add_argument("--train_data_size", type=int, default=256, help="rows in train.parquet")
    parser.add_argument("--val_data_size", type=int, default=256, help="rows in test.parquet")
    parser.add_argument("--local_dir", default="~/data/verl-agent", help="output folder (gets a <mode>/ subfolder)")
    args = parser.parse_args(argv)
    if not args.env.strip():
        parser.error("--env must name an environment, e.g. alfworld")

    out_dir = Path(args.local_dir).expanduser() / args.mode
    written = []
    for split, size_arg in SPLITS:
        path = out_dir / f"{split}.parquet"
        write_parquet_atomic(task_slots(args.env, split, getattr(args, size_arg), args.mode == "visual"), path)
        print(f"wrote {getattr(args, size_arg)} {args.env} task slots to {path}")
        written.append(path)
    return written


if __name__ == "__main__":
    main()
