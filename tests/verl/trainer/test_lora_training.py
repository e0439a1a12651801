"""End-to-end LoRA runs of the real trainer (Ray, FSDP2 on gloo, hf rollout) on the echo env."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import echo_overrides, trainer_config
from tests.verl.trainer.test_main_ppo import read_metrics
from tests.verl.workers.test_lora_workers import adapters_in
from verl.trainer.main_ppo import run_ppo

LORA = dict(actor_rollout_ref__model__lora_rank=8, actor_rollout_ref__model__lora_alpha=16)


@pytest.fixture(scope="module")
def untied_tiny_model(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with its output head untied from the embeddings, so LoRA may adapt the head."""
    out = tmp_path_factory.mktemp("untied")
    shutil.copytree(tiny_model_dir, out, dirs_exist_ok=True)
    tied = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tied.config.tie_word_embeddings = False
    untied = AutoModelForCausalLM.from_config(tied.config)
    state = dict(tied.state_dict())
    state["lm_head.weight"] = state["model.embed_tokens.weight"].clone()
    untied.load_state_dict(state)
    untied.generation_config = tied.generation_config
    untied.save_pretrained(out)
    return str(out)


def test_lora_raises_the_reward_of_a_tiny_model(ray_cluster, untied_tiny_model, echo_slots, tmp_path):
    """Learning through the adapters alone: GRPO with LoRA (every linear layer and the output head) lifts
    the mean episode reward. (A 2-layer random model learns the echo task mostly through its output head,
    which full fine-tuning trains directly.)"""
    steps = 30
    targets = "[q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj,lm_head]"
    run_ppo(trainer_config(echo_overrides(untied_tiny_model, echo_slots, tmp_path, env__rollout__n=8,
                                          trainer__total_training_steps=steps, actor_rollout_ref__actor__optim__lr=5e-2,
                                          actor_rollout_ref__model__target_modules=targets, **LORA)))
    rewards = [m["episode/reward/mean"] for m in read_metrics(tmp_path)]
    assert len(rewards) == steps
    first, last = np.mean(rewards[:5]), np.mean(rewards[-5:])
    assert last > first + 0.1, rewards


def test_lora_resume_matches_an_uninterrupted_run_and_the_reference_is_the_base(ray_cluster, tiny_model_dir,
                                                                                 echo_slots, tmp_path):
    """2 steps, stop, resume for 2 more == 4 straight steps, with a KL loss against the reference (the actor
    with its adapters off, no second model)."""
    def run(out: Path, total: int) -> None:
        run_ppo(trainer_config(echo_overrides(tiny_model_dir, echo_slots, out, trainer__total_training_steps=total,
                                              trainer__save_freq=2, env__max_steps=2,
                                              actor_rollout_ref__actor__use_kl_loss=True, **LORA)))

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    run(tmp_path / "resumed", 4)
    metrics = read_metrics(tmp_path / "resumed")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]
    assert metrics[3]["actor/kl_loss"] > 0  # the trained adapters moved the policy away from the base
    a = adapters_in(tmp_path / "straight/global_step_4/actor")
    b = adapters_in(tmp_path / "resumed/global_step_4/actor")
    assert a.keys() == b.keys() and any("lora_B" in k and a[k].abs().sum() > 0 for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
