"""Placeholder task-slot parquet files (examples/data_preprocess/prepare.py)."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from examples.data_preprocess import prepare


def test_text_mode_writes_verl_agent_layout(tmp_path):
    written = prepare.main(["--train_data_size", "5", "--val_data_size", "3", "--local_dir", str(tmp_path)])
    assert written == [tmp_path / "text" / "train.parquet", tmp_path / "text" / "test.parquet"]
    rows = pq.read_table(written[1]).to_pylist()
    assert rows == [
        {
            "data_source": "alfworld",
            "prompt": [{"role": "user", "content": ""}],
            "ability": "agent",
            "extra_info": {"split": "test", "index": i},
            "env_kwargs": [],
        }
        for i in range(3)
    ]
    train = pd.read_parquet(written[0])
    assert len(train) == 5 and "images" not in train.columns
    assert [dict(kw) for kw in train["env_kwargs"]] == [{}] * 5
    assert sorted(p.name for p in (tmp_path / "text").iterdir()) == ["test.parquet", "train.parquet"]


def test_visual_mode_and_other_envs(tmp_path):
    prepare.main(["--mode", "visual", "--env", "echo", "--train_data_size", "2", "--val_data_size", "1",
                  "--local_dir", str(tmp_path)])
    rows = pq.read_table(tmp_path / "visual" / "train.parquet").to_pylist()
    assert [r["data_source"] for r in rows] == ["echo", "echo"]
    assert [r["images"] for r in rows] == [[], []]
    assert [r["extra_info"] for r in rows] == [{"split": "train", "index": 0}, {"split": "train", "index": 1}]


def test_bad_sizes_and_env_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="train data size"):
        prepare.main(["--train_data_size", "0", "--local_dir", str(tmp_path)])
    with pytest.raises(SystemExit):
        prepare.main(["--env", " ", "--local_dir", str(tmp_path)])
    assert not (tmp_path / "text").exists() or not any((tmp_path / "text").iterdir())
