"""A CPU training run on Search-QA: real task slots, an in-process BM25 retriever, the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from tests.conftest import REPO_ROOT, trainer_config
from verl.trainer.main_ppo import run_ppo


def test_search_training_completes_two_steps(ray_cluster, tiny_model_dir, bm25_index, tmp_path):
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/preprocess_search_r1_dataset.py"),
                    "--local_dir", str(data)], check=True, capture_output=True)
    out = tmp_path / "run"
    run_ppo(trainer_config([
        "env.env_name=search", f"env.search.search_url=local:{bm25_index}", "env.max_steps=2",
        "env.history_length=2", "env.rollout.n=2", f"actor_rollout_ref.model.path={tiny_model_dir}",
        f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'test.parquet'}",
        "data.train_batch_size=2", "data.val_batch_size=64", "data.max_prompt_length=1024",
        "data.max_response_length=16", "actor_rollout_ref.actor.ppo_mini_batch_size=2",
        "trainer.total_training_steps=2", "trainer.test_freq=2", "trainer.val_before_train=False",
        "trainer.logger=[file]", f"trainer.default_local_dir={out}", "trainer.log_prompts=True",
    ]))
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert "val/success_rate" in metrics[-1]
    questions = {row["env_kwargs"]["question"].strip() for row in pd.read_parquet(data / "test.parquet").to_dict("records")}
    assert metrics[-1]["val/num_games"] == len(questions)  # each distinct question once
    for key in ("search/errors", "search/queries", "val/search/errors"):  # failed searches are counted
        assert metrics[-1][key] >= 0.0, key
    # success is reported per data source and per skill type of the questions played
    tags = {k for m in metrics for k in m if k.startswith("episode/") and k.endswith("_success_rate")}
    assert any(t.split("/")[1].split("_success")[0] in {"nq", "hotpotqa"} for t in tags), tags
    rows = [json.loads(line) for p in (out / "rollouts").glob("train_step_1_*.jsonl")
            for line in p.read_text().splitlines()]
    assert rows and all("Question" in r["prompt"] or "question" in r["prompt"].lower() for r in rows)
