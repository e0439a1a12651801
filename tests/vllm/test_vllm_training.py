"""Training with ``actor_rollout_ref.rollout.name=vllm``: the CLI on the echo env and on ALFWorld, and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="the vLLM suite runs in .venv-vllm: bash scripts/run_tests.sh --vllm")

from tests.conftest import REPO_ROOT, echo_overrides, trainer_config  # noqa: E402
from tests.vllm.conftest import KV_CACHE_GIB  # noqa: E402
from verl.trainer.main_ppo import run_ppo  # noqa: E402

VLLM = {"actor_rollout_ref.rollout.name": "vllm", "actor_rollout_ref.rollout.kv_cache_memory_gib": KV_CACHE_GIB}


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_cli_two_steps_on_alfworld(tiny_model_dir, alfworld_root, tmp_path):
    slots = tmp_path / "slots"
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--mode", "text",
                    "--env", "alfworld", "--train_data_size", "8", "--val_data_size", "2", "--local_dir", str(slots)],
                   check=True, capture_output=True)
    args = [f"{k}={v}" for k, v in {
        **VLLM, "env.env_name": "alfworld/AlfredTWEnv", "env.alfworld.data_path": alfworld_root,
        "actor_rollout_ref.model.path": tiny_model_dir, "data.train_files": slots / "text/train.parquet",
        "data.val_files": slots / "text/test.parquet", "data.train_batch_size": 2, "data.val_batch_size": 2,
        "env.rollout.n": 2, "env.max_steps": 2, "env.history_length": 1, "data.max_prompt_length": 1024,
        "data.max_response_length": 16, "actor_rollout_ref.actor.ppo_mini_batch_size": 2,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 4, "trainer.total_training_steps": 2,
        "trainer.test_freq": 2, "trainer.val_before_train": False, "trainer.logger": "[console,file]",
        "trainer.default_local_dir": tmp_path / "run"}.items()]
    cli(args, tmp_path)
    metrics = read_metrics(tmp_path / "run")
    print({k: v for k, v in metrics[-1].items() if k.startswith("timing_s")})
    assert [m["step"] for m in metrics] == [1, 2]
    assert "val/success_rate" in metrics[-1] and metrics[0]["episode/valid_action_ratio"] >= 0


def step_samples(run_dir: Path, step: int) -> list[tuple]:
    rows = (run_dir / "rollouts" / f"train_step_{step}_0.jsonl").read_text().splitlines()
    return sorted((r["env"], r["step"], r["prompt"], r["response"]) for r in map(json.loads, rows))


def test_cli_two_steps_on_the_echo_env_and_resume_samples_the_same(ray_cluster, tiny_model_dir, echo_slots,
                                                                     tmp_path):
    """Two steps through the CLI; then one step + a resumed second step (in-process): the resumed step
    samples exactly what the uninterrupted run sampled at that step."""
    def overrides(out: Path, total: int) -> list[str]:
        return echo_overrides(tiny_model_dir, echo_slots, out, **VLLM, trainer__total_training_steps=total,
                              trainer__save_freq=1, trainer__log_prompts=True, data__max_response_length=8,
                              env__max_steps=2, trainer__logger="[console,file]")

    proc = cli(overrides(tmp_path / "straight", 2), tmp_path)
    assert f"KV cache fixed at {KV_CACHE_GIB} GiB" in proc.stdout + proc.stderr  # the vLLM engine served it
    metrics = read_metrics(tmp_path / "straight")
    assert [m["step"] for m in metrics] == [1, 2]
    assert all(m["response_length/mean"] > 0 and "actor/pg_loss" in m for m in metrics)

    run_ppo(trainer_config(overrides(tmp_path / "resumed", 1)))
    run_ppo(trainer_config(overrides(tmp_path / "resumed", 2)))
    assert [m["step"] for m in read_metrics(tmp_path / "resumed")] == [1, 2]
    assert step_samples(tmp_path / "resumed", 2) == step_samples(tmp_path / "straight", 2)
    assert step_samples(tmp_path / "straight", 2) != step_samples(tmp_path / "straight", 1)


def test_a_vision_language_model_with_vllm_stops_at_start_up(tiny_vl_model_dir, echo_slots, tmp_path):
    with pytest.raises(ValueError, match="vision-language model.*rollout.name=hf"):
        run_ppo(trainer_config(echo_overrides(tiny_vl_model_dir, echo_slots, tmp_path / "run", **VLLM)))
    assert not (tmp_path / "run").exists()  # nothing started
