"""Visual (AgentOCR) mode end to end through the CLI: the tiny Qwen2.5-VL trains 2 steps on ALFWorld
and on Search-QA, with and without agent-chosen compression. The ALFWorld run with compression also
drives the SKILL0 curriculum (paired validations after each step); the runs without compression skip
validation to keep the suite short."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from agent_system.environments.env_package.alfworld.games import unpack_shared_data
from tests.conftest import REPO_ROOT
from verl.utils.model import load_causal_lm
from verl.utils.vision import load_image_processor

COMMON = [
    "env.rollout.n=2", "data.train_batch_size=1", "data.val_batch_size=1", "data.max_prompt_length=4096",
    "data.max_response_length=8", "actor_rollout_ref.actor.ppo_mini_batch_size=1",
    "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2", "actor_rollout_ref.rollout.micro_batch_size=8",
    "trainer.total_training_steps=2", "trainer.logger=[file]", "trainer.val_before_train=False",
    "ocr.use_ocr=True", "ocr.font_size=10", "ocr.max_width=196", "ocr.use_parallel=False",
]
COMPRESSION = ["ocr.agent_select_compression.enable=True",
               "ocr.agent_select_compression.compression_reward_coef=0.01",
               "ocr.agent_select_compression.compression_reward_every_n_steps=2"]
VISUAL_KEYS = ("rollout/visual_tokens_per_step", "rollout/text_tokens_per_step", "rollout/context_tokens_per_step",
               "ocr/image_height/mean", "ocr/render_seconds", "ocr/cache_hit_rate")


def cli(args: list[str], cwd: Path) -> list[dict]:
    proc = subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=1100)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = Path(next(a.split("=", 1)[1] for a in args if a.startswith("trainer.default_local_dir=")))
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def check_visual_metrics(metrics: list[dict], compression: bool) -> None:
    train = [m for m in metrics if "episode/success_rate" in m]
    assert [m["step"] for m in train] == [1, 2]
    for m in train:
        for key in VISUAL_KEYS:
            assert key in m, key
        assert m["rollout/visual_tokens_per_step"] >= 9  # at least the blank image's 3x3 merged patches
        assert m["rollout/context_tokens_per_step"] == pytest.approx(
            m["rollout/visual_tokens_per_step"] + m["rollout/text_tokens_per_step"])
        assert ("ocr/compression_factor/mean" in m) == compression
        assert "actor/pg_loss" in m


@pytest.mark.parametrize("compression", [True, False], ids=["compression_curriculum", "no_compression"])
def test_alfworld_visual_training(tiny_vl_model_dir, tmp_path, compression):
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "visual",
                    "--env", "alfworld", "--train_data_size", "4", "--val_data_size", "1",
                    "--local_dir", str(tmp_path / "data")], check=True, capture_output=True)
    slots = tmp_path / "data" / "visual"
    curriculum = [
        *COMPRESSION, "env.curriculum_learning.enable=True", "env.curriculum_learning.max_set_schedule=[1,0]",
        f"env.curriculum_learning.skill_mapping_file={REPO_ROOT / 'skills/alfworld/skill_mapping.json'}",
        "trainer.test_freq=1"]
    metrics = cli([
        *COMMON, *(curriculum if compression else ["trainer.test_freq=-1", "trainer.save_freq=2"]),
        f"actor_rollout_ref.model.path={tiny_vl_model_dir}", "env.env_name=alfworld/AlfredTWEnv",
        f"env.alfworld.data_path={unpack_shared_data()}", "env.max_steps=2", "env.history_length=2",
        f"data.train_files={slots / 'train.parquet'}", f"data.val_files={slots / 'test.parquet'}",
        f"trainer.default_local_dir={tmp_path / 'run'}", "trainer.log_prompts=True",
    ], tmp_path)
    check_visual_metrics(metrics, compression)
    if not compression:  # the trained VL actor merges into a release folder that loads with its image processor
        release = tmp_path / "release"
        subprocess.run([sys.executable, str(REPO_ROOT / "scripts/model_merger.py"), "merge", "--backend", "fsdp",
                        "--local_dir", str(tmp_path / "run/global_step_2/actor"), "--target_dir", str(release)],
                       check=True, capture_output=True)
        assert type(load_causal_lm(str(release), torch.float32)).__name__ == "Qwen2_5_VLForConditionalGeneration"
        load_image_processor(str(release))
    if compression:
        budgets = {m["step"]: m["val/curriculum/max_set"] for m in metrics if "val/curriculum/max_set" in m}
        assert budgets == {1: 1, 2: 0}
    rows = [json.loads(line) for line in (tmp_path / "run/rollouts/train_step_1_0.jsonl").read_text().splitlines()]
    assert rows and all("[Observation]:" not in r["prompt"] for r in rows)  # the history is in the image
    assert any("image above" in r["prompt"] for r in rows)
    assert all(("<compression>" in r["prompt"]) == compression for r in rows)


@pytest.mark.parametrize("compression", [True, False], ids=["compression", "no_compression"])
def test_search_visual_training(tiny_vl_model_dir, bm25_index, tmp_path, compression):
    data = tmp_path / "data"
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/preprocess_search_r1_dataset.py"),
                    "--local_dir", str(data)], check=True, capture_output=True)
    pd.read_parquet(data / "test.parquet").head(2).to_parquet(data / "val.parquet")  # a 2-question validation
    metrics = cli([
        *COMMON, *(COMPRESSION if compression else []), f"actor_rollout_ref.model.path={tiny_vl_model_dir}",
        "env.env_name=search", f"env.search.search_url=local:{bm25_index}", "env.max_steps=2",
        "env.history_length=2", f"data.train_files={data / 'train.parquet'}", f"data.val_files={data / 'val.parquet'}",
        f"trainer.test_freq={2 if compression else -1}", f"trainer.default_local_dir={tmp_path / 'run'}",
        "ocr.max_width=280", "ocr.font_size=12",
    ], tmp_path)
    check_visual_metrics(metrics, compression)
    assert ("val/success_rate" in metrics[-1]) == compression
    # the search client's counters (pop_metrics) travel beside the rendering statistics (rollout_stats)
    assert all("search/errors" in m and "search/queries" in m for m in metrics if "episode/success_rate" in m)
    assert ("val/search/errors" in metrics[-1]) == compression
