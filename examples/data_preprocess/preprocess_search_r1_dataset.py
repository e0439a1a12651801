"""Search-QA task slots: ``train.parquet`` and ``test.parquet`` with ``env_kwargs`` per row.

Local (Search-R1 style JSON lines, e.g. the bundled ``shared/data/search/qa``)::

    python examples/data_preprocess/preprocess_search_r1_dataset.py --local_dir ~/data/searchR1_processed_direct \\
        [--data_dir DIR] [--train_sources nq,hotpotqa] [--test_fraction 0.25] [--seed 42]

Online (the Search-R1 parquet files on the Hugging Face hub)::

    python examples/data_preprocess/preprocess_search_r1_dataset.py --local_dir DIR \\
        --hf_repo_id PeterJinGo/nq_hotpotqa_train

Rows: data_source, prompt, ability, reward_model.ground_truth, extra_info and env_kwargs {question,
ground_truth, data_source, skill_type}; see docs/search.md for the split and the skill classifier.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from agent_system.environments.env_package.search.dataset import (
    default_qa_dir,
    read_qa_dir,
    records_from_frame,
    split_records,
    task_frame,
    write_parquet_atomic,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local_dir", default="~/data/searchR1_processed_direct", help="output folder")
    parser.add_argument("--data_dir", default=None, help=f"folder of *.jsonl QA files (default: {default_qa_dir()})")
    parser.add_argument("--hf_repo_id", default=None,
                        help="read train.parquet / test.parquet from this hub dataset instead (needs internet)")
    parser.add_argument("--train_sources", default="nq,hotpotqa",
                        help="local mode: comma-separated sources that feed the train split ('all' = every file)")
    parser.add_argument("--test_fraction", type=float, default=0.25,
                        help="local mode: share of each train source held out for test")
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def _hub_splits(repo_id: str) -> dict[str, pd.DataFrame]:
    from huggingface_hub import hf_hub_download

    return {split: pd.read_parquet(hf_hub_download(repo_id, f"{split}.parquet", repo_type="dataset"))
            for split in ("train", "test")}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir = Path(args.local_dir).expanduser()
    try:
        if args.hf_repo_id:
            splits = {name: records_from_frame(frame, f"{args.hf_repo_id}/{name}.parquet")
                      for name, frame in _hub_splits(args.hf_repo_id).items()}
        else:
            records = read_qa_dir(Path(args.data_dir) if args.data_dir else default_qa_dir())
            sources = ({r.data_source for r in records} if args.train_sources == "all"
                       else {s.strip() for s in args.train_sources.split(",") if s.strip()})
            train, test = split_records(records, sources, args.test_fraction, args.seed)
            splits = {"train": train, "test": test}
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, records in splits.items():
        frame = task_frame(records, name)
        write_parquet_atomic(frame, out_dir / f"{name}.parquet")
        counts = frame["env_kwargs"].map(lambda kwargs: kwargs["skill_type"]).value_counts().sort_index()
        print(f"{out_dir / f'{name}.parquet'}: {len(frame)} rows; skill types {counts.to_dict()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
