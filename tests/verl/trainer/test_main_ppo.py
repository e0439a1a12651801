"""End-to-end training runs of the real trainer (Ray, FSDP2 on gloo, hf rollout) on the echo env."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from agent_system.environments.env_package.search.client import HttpSearchBackend, RetrievalError, SearchSettings
from tests.conftest import REPO_ROOT, echo_overrides, trainer_config
from verl.trainer.main_ppo import RUN_STOPPING_ERRORS, run_ppo, stop_message
from verl.utils.checkpoint import CheckpointManager


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def merged_weights(actor_dir: Path, out: Path) -> dict[str, torch.Tensor]:
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts/model_merger.py"), "merge", "--backend", "fsdp",
                    "--local_dir", str(actor_dir), "--target_dir", str(out)], check=True, capture_output=True)
    return AutoModelForCausalLM.from_pretrained(out).state_dict()


def cli(args: list[str], cwd: Path, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python -m verl.trainer.main_ppo args`` in a fresh process (it starts or joins Ray itself)."""
    return subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env)


def test_grpo_raises_the_reward_of_a_tiny_model(ray_cluster, tiny_model_dir, echo_slots, tmp_path):
    """Learning, not just running: GRPO lifts the mean episode reward of a random tiny model."""
    steps = 30
    run_ppo(trainer_config(echo_overrides(tiny_model_dir, echo_slots, tmp_path, env__rollout__n=8,
                                          trainer__total_training_steps=steps)))
    rewards = [m["episode/reward/mean"] for m in read_metrics(tmp_path)]
    assert len(rewards) == steps
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.1, rewards


def test_resumed_run_matches_an_uninterrupted_one(ray_cluster, tiny_model_dir, echo_slots, tmp_path):
    """2 steps, stop, resume for 2 more == 4 straight steps (same seed): identical weights and metrics."""
    def run(out: Path, total: int) -> None:
        run_ppo(trainer_config(echo_overrides(tiny_model_dir, echo_slots, out, trainer__total_training_steps=total,
                                              trainer__save_freq=2, env__max_steps=2)))

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    metrics = tmp_path / "resumed/metrics.jsonl"  # as if killed after the save of step 2, before its row
    metrics.write_text(metrics.read_text().splitlines(keepends=True)[0])
    run(tmp_path / "resumed", 4)
    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed):  # the row of step 2 came back from the checkpoint, identical
        assert {k: v for k, v in a.items() if not k.startswith(("timing_s/", "perf/"))} == \
               {k: v for k, v in b.items() if not k.startswith(("timing_s/", "perf/"))}, a["step"]
    a = merged_weights(tmp_path / "straight/global_step_4/actor", tmp_path / "merged_a")
    b = merged_weights(tmp_path / "resumed/global_step_4/actor", tmp_path / "merged_b")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)


def test_cli_run_writes_metrics_checkpoints_and_resumes(tiny_model_dir, echo_slots, tmp_path):
    """The real command line: 2 steps, then total 3 resumes at step 2 and runs only step 3 (2 ranks, packed
    sequences); one timing line per step, and no Ray auth notice for the cluster the run starts itself."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # as in a fresh shell

    def train(total: int) -> str:
        args = echo_overrides(tiny_model_dir, echo_slots, tmp_path, trainer__total_training_steps=total,
                              trainer__save_freq=1, trainer__test_freq=1, trainer__val_before_train=True,
                              trainer__n_gpus_per_node=2, actor_rollout_ref__model__use_remove_padding=True,
                              **{"trainer.logger": "[console,file]"})
        proc = cli(args, tmp_path, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "Token authentication" not in proc.stderr + proc.stdout
        return proc.stdout

    train(2)
    assert [m["step"] for m in read_metrics(tmp_path)] == [0, 1, 2]
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "2"
    out = train(3)
    assert "resumed from" in out and "global step 2" in out
    assert "step:1 " not in out and "step:3 " in out
    # old log-probs come from the update's forward (one epoch, one mini-batch): no separate pass
    assert re.search(r"^step 3/3 \| gen [0-9.]+s \| old_log_prob - \| ref - \| values - \| adv [0-9.]+s \| "
                     r"update [0-9.]+s \| val [0-9.]+s \| save [0-9.]+s \| total [0-9.]+s$", out, re.M), out
    metrics = read_metrics(tmp_path)
    assert [m["step"] for m in metrics] == [0, 1, 2, 3]
    for key in ("val/success_rate", "episode/reward/mean", "timing_s/gen", "perf/throughput",
                "response_length/mean", "rollout/context_tokens_per_step", "actor/pg_loss", "actor/entropy_rollout"):
        assert key in metrics[-1], key
    assert sorted(p.name for p in tmp_path.glob("global_step_*")) == ["global_step_1", "global_step_2", "global_step_3"]


def test_gae_critic_with_kl_loss_and_kl_in_reward_on_one_bundle_per_rank(tiny_model_dir, echo_slots, tmp_path):
    """The critic and reference roles (GAE advantages, a value update, KL loss and KL in the reward) on a
    cluster of exactly one CPU per rank: the critic shares the actor's ranks, it reserves nothing more."""
    proc = cli(echo_overrides(
        tiny_model_dir, echo_slots, tmp_path, algorithm__adv_estimator="gae", algorithm__gamma=0.99,
        algorithm__lam=0.95, actor_rollout_ref__actor__use_kl_loss=True, algorithm__use_kl_in_reward=True,
        algorithm__kl_ctrl__type="adaptive", trainer__save_freq=2, trainer__total_training_steps=2,
        trainer__critic_warmup=1, env__max_steps=2, trainer__n_gpus_per_node=2, ray_init__num_cpus=2,
        actor_rollout_ref__model__use_remove_padding=True, critic__model__use_remove_padding=True), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray resource plan: 2 CPU, 0 GPU" in proc.stdout
    assert "ranks placed on one placement group of 2 x {'CPU': 1.0}" in proc.stdout
    assert "memory plan per rank (2 ranks, cpu" in proc.stdout and "fits" in proc.stdout
    first, second = read_metrics(tmp_path)
    assert "critic/vf_loss" in first and "actor/pg_loss" not in first  # critic warm-up: no actor update yet
    assert "actor/kl_loss" in second and "critic/values/mean" in second
    assert second["actor/reward_kl_penalty_coeff"] != first["actor/reward_kl_penalty_coeff"]  # adaptive
    assert (tmp_path / "global_step_2" / "critic" / "dcp" / ".metadata").exists()


def test_a_cluster_too_small_fails_at_once_with_the_numbers_and_keys(tiny_model_dir, echo_slots, tmp_path):
    """Never a silent wait: with a 10-minute placement timeout the run must still stop right away."""
    proc = cli(echo_overrides(tiny_model_dir, echo_slots, tmp_path, trainer__n_gpus_per_node=3,
                              ray_init__num_cpus=2, trainer__ray_wait_register_center_timeout=600), tmp_path,
               timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "CPU: the plan needs 3, the cluster has 2" in proc.stderr
    assert "ranks (actor, rollout, reference, critic colocated): 3 x 1 CPU (trainer.nnodes x trainer.n_gpus_per_node)" \
        in proc.stderr and "ray_init.num_cpus" in proc.stderr and "Traceback" not in proc.stderr


def test_gigpo_cli_run_with_dynamic_sampling(tiny_model_dir, echo_slots, tmp_path):
    """GiGPO through the command line: discounted step returns with the invalid-action penalty, DAPO filter."""
    args = echo_overrides(tiny_model_dir, echo_slots, tmp_path, algorithm__adv_estimator="gigpo", env__max_steps=2,
                          algorithm__gamma=0.95, algorithm__gigpo__mode="mean_std_norm",
                          actor_rollout_ref__actor__use_invalid_action_penalty=True,
                          algorithm__filter_groups__enable=True, algorithm__filter_groups__max_num_gen_batches=3,
                          trainer__total_training_steps=1)
    proc = cli(args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (m,) = read_metrics(tmp_path)
    assert 1 <= m["filter_groups/num_gen_batches"] <= 3 and m["filter_groups/kept_groups"] >= 1
    assert m["critic/advantages/max"] > 0 > m["critic/advantages/min"]
    assert "actor/pg_loss" in m


def test_a_retriever_down_for_good_stops_the_run_with_one_line_naming_the_url_and_the_resume_point(tmp_path):
    """benchmarks/faults_outage.py: a retrieval server gone for good ended the run with a Hydra traceback
    (exit 1); ``main`` now prints this line without one and exits 3, as for a failed checkpoint write."""
    url = "http://127.0.0.1:9/retrieve"  # discard port: nothing listens
    with pytest.raises(RetrievalError) as error:
        HttpSearchBackend(url, SearchSettings(max_retries=0, retry_backoff=0.0, max_outage_s=0)).search(["q"])
    assert isinstance(error.value, RUN_STOPPING_ERRORS)
    assert stop_message(error.value, str(tmp_path)).endswith("starts from step 0 (no checkpoint was saved yet)")
    CheckpointManager(str(tmp_path)).save(2, lambda tmp: None, {"global_step": 2})
    message = stop_message(error.value, str(tmp_path))
    assert message.startswith(f"SkillZero stopped: retrieval server {url} failed every request")
    assert message.endswith(f"trainer.resume_mode=auto resumes from {(tmp_path / 'global_step_2').resolve()}")
