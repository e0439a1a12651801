"""Search-QA task slots: the preprocessing and validation scripts on the bundled QA files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from agent_system.environments.categories import SEARCH_SKILL_TYPES
from agent_system.environments.env_package.search.dataset import (
    QARecord,
    default_qa_dir,
    read_qa_jsonl,
    split_records,
    task_row,
)
from agent_system.environments.env_package.search.envs import SearchTask

REPO_ROOT = Path(__file__).resolve().parents[3]
PREPROCESS = REPO_ROOT / "examples" / "data_preprocess" / "preprocess_search_r1_dataset.py"
GENERATE_VAL = REPO_ROOT / "examples" / "data_preprocess" / "generate_search_r1_val.py"


def run(script: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def processed(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search-data")
    result = run(PREPROCESS, "--local_dir", str(out), "--seed", "3")
    assert result.returncode == 0, result.stderr
    return out


def test_train_and_test_files(processed):
    train, test = pd.read_parquet(processed / "train.parquet"), pd.read_parquet(processed / "test.parquet")
    assert set(train["data_source"]) == {"nq", "hotpotqa"} and len(train) == 600
    assert set(test["data_source"]) == {"nq", "hotpotqa", "triviaqa", "popqa", "2wikimultihopqa", "musique", "bamboogle"}
    assert len(test) == 1900
    assert not set(train["extra_info"].map(lambda e: e["id"])) & set(test["extra_info"].map(lambda e: e["id"]))
    row = train.iloc[0]
    kwargs = row["env_kwargs"]
    assert set(kwargs) == {"question", "ground_truth", "data_source", "skill_type"}
    assert list(row["prompt"]) == [{"role": "user", "content": kwargs["question"]}]
    assert list(row["reward_model"]["ground_truth"]["target"]) == list(kwargs["ground_truth"])
    assert row["ability"] == "fact-reasoning" and row["extra_info"]["split"] == "train"
    assert set(train["env_kwargs"].map(lambda k: k["skill_type"])) == {"direct_retrieval", "multi_hop_reasoning", "compare"}
    # A parquet row's env_kwargs (numpy arrays and all) is a valid reset kwargs dict.
    task = SearchTask.from_kwargs(dict(kwargs, seed=0))
    assert task.gold_answers and task.skill_type == kwargs["skill_type"]


def test_the_split_is_seeded(tmp_path, processed):
    assert run(PREPROCESS, "--local_dir", str(tmp_path), "--seed", "3").returncode == 0
    again = pd.read_parquet(tmp_path / "train.parquet")
    assert again["extra_info"].map(lambda e: e["id"]).tolist() == \
        pd.read_parquet(processed / "train.parquet")["extra_info"].map(lambda e: e["id"]).tolist()
    records = [QARecord(str(i), f"q{i}", ("a",), "nq") for i in range(20)]
    train_a, _ = split_records(records, {"nq"}, 0.25, seed=1)
    train_b, test_b = split_records(records, {"nq"}, 0.25, seed=2)
    assert len(train_a) == 15 and len(test_b) == 5 and train_a != train_b


def test_validation_file_caps_each_category(processed, tmp_path):
    result = run(GENERATE_VAL, "--input", str(processed / "test.parquet"), "--output_dir", str(tmp_path),
                 "--max_sample", "60", "--seed", "1")
    assert result.returncode == 0, result.stderr
    val = pd.read_parquet(tmp_path / "val_60.parquet")
    counts = val["env_kwargs"].map(lambda k: k["skill_type"]).value_counts().to_dict()
    assert counts == {skill_type: 60 for skill_type in SEARCH_SKILL_TYPES}
    again = run(GENERATE_VAL, "--input", str(processed / "test.parquet"), "--output_dir", str(tmp_path),
                "--max_sample", "60", "--seed", "1")
    assert again.returncode == 0
    assert pd.read_parquet(tmp_path / "val_60.parquet")["extra_info"].map(lambda e: e["id"]).tolist() == \
        val["extra_info"].map(lambda e: e["id"]).tolist()


def test_validation_labels_rows_without_skill_type(tmp_path):
    rows = [task_row(QARecord("1", "Which came first, A or B?", ("A",), "hotpotqa"), "test", 0)]
    rows[0]["env_kwargs"]["skill_type"] = ""
    pd.DataFrame(rows).to_parquet(tmp_path / "old.parquet")
    assert run(GENERATE_VAL, "--input", str(tmp_path / "old.parquet"), "--max_sample", "5").returncode == 0
    assert pd.read_parquet(tmp_path / "val_5.parquet").iloc[0]["env_kwargs"]["skill_type"] == "compare"


def test_bad_inputs_name_the_problem(tmp_path):
    bad = tmp_path / "qa" / "x.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"id": "1", "question": "q", "golden_answers": ["a"], "data_source": "nq"}) + "\n"
                   + json.dumps({"id": "2", "question": "q", "golden_answers": [], "data_source": "nq"}) + "\n")
    result = run(PREPROCESS, "--local_dir", str(tmp_path / "out"), "--data_dir", str(bad.parent))
    assert result.returncode == 2 and f"{bad}:2" in result.stderr and "golden_answers" in result.stderr
    result = run(PREPROCESS, "--local_dir", str(tmp_path / "out"), "--train_sources", "nq,nosuchset")
    assert result.returncode == 2 and "nosuchset" in result.stderr
    result = run(PREPROCESS, "--local_dir", str(tmp_path / "out"), "--data_dir", str(tmp_path / "empty"))
    assert result.returncode == 2 and "no *.jsonl" in result.stderr
    result = run(GENERATE_VAL, "--input", str(tmp_path / "missing.parquet"))
    assert result.returncode == 2 and "missing.parquet" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bundled_qa_files_parse():
    records = read_qa_jsonl(default_qa_dir() / "bamboogle.jsonl")
    assert len(records) == 100 and records[0].data_source == "bamboogle"
