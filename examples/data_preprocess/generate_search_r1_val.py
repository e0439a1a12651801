"""Per-category validation file: at most ``--max_sample`` rows of each skill type, seeded.

    python examples/data_preprocess/generate_search_r1_val.py [--input DIR/test.parquet] \\
        [--output_dir DIR] [--max_sample 1000] [--seed 42]

Writes ``<output_dir>/val_<max_sample>.parquet``. Rows without ``env_kwargs.skill_type`` (files made by
other tools) are labelled with the same classifier the preprocessing uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from agent_system.environments.env_package.search.classifier import classify_question
from agent_system.environments.env_package.search.dataset import cap_per_skill_type, write_parquet_atomic

DEFAULT_DIR = "~/data/searchR1_processed_direct"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", default=f"{DEFAULT_DIR}/test.parquet", help="task-slot parquet to sample from")
    parser.add_argument("--output_dir", default=None, help="default: the input's folder")
    parser.add_argument("--max_sample", type=int, default=1000, help="rows kept per skill type")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def with_skill_types(frame: pd.DataFrame) -> pd.DataFrame:
    """``env_kwargs.skill_type`` filled in for rows that lack it."""
    if "env_kwargs" not in frame.columns:
        raise ValueError("the input has no env_kwargs column; make it with preprocess_search_r1_dataset.py")

    def label(row: pd.Series) -> dict:
        kwargs = dict(row["env_kwargs"])
        if not kwargs.get("skill_type"):
            kwargs["skill_type"] = classify_question(kwargs["question"], str(row["data_source"]))
        return kwargs

    frame = frame.copy()
    frame["env_kwargs"] = frame.apply(label, axis=1)
    return frame


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    source = Path(args.input).expanduser()
    output = Path(args.output_dir).expanduser() if args.output_dir else source.parent
    try:
        frame = with_skill_types(pd.read_parquet(source))
        val = cap_per_skill_type(frame, args.max_sample, args.seed)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: {source}: {error}", file=sys.stderr)
        return 2
    path = output / f"val_{args.max_sample}.parquet"
    write_parquet_atomic(val, path)
    counts = val["env_kwargs"].map(lambda kwargs: kwargs["skill_type"]).value_counts().sort_index()
    print(f"{path}: {len(val)} of {len(frame)} rows; skill types {counts.to_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
