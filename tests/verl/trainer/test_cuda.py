"""The CUDA path (marked ``gpu``; skipped without a GPU): bf16 mixed precision, FSDP2 on NCCL, the hf
rollout engine with streamed weight sync, the offload variants, and the merger on a CUDA checkpoint."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import echo_overrides, trainer_config
from tests.verl.trainer.test_main_ppo import merged_weights, read_metrics
from verl.trainer.main_ppo import run_ppo

pytestmark = pytest.mark.gpu

OFFLOAD = {
    "none": {},
    "param": {"actor_rollout_ref__actor__fsdp_config__param_offload": True,
              "actor_rollout_ref__ref__fsdp_config__param_offload": True},
    "optimizer": {"actor_rollout_ref__actor__fsdp_config__optimizer_offload": True},
}


@pytest.mark.parametrize("offload", sorted(OFFLOAD))
def test_two_steps_on_cuda_then_merge_the_checkpoint(ray_cluster, tiny_model_dir, echo_slots, tmp_path, offload):
    run_ppo(trainer_config(echo_overrides(
        tiny_model_dir, echo_slots, tmp_path, trainer__device="cuda", trainer__save_freq=2, env__max_steps=2,
        actor_rollout_ref__actor__use_kl_loss=True, **OFFLOAD[offload])))  # the KL loss brings the reference in
    metrics = read_metrics(tmp_path)
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        assert 0 < m["perf/max_cuda_allocated_gb"] < torch.cuda.get_device_properties(0).total_memory / 2**30
        assert torch.isfinite(torch.tensor([m["actor/pg_loss"], m["actor/kl_loss"], m["actor/grad_norm"]])).all()
    merged = merged_weights(tmp_path / "global_step_2" / "actor", tmp_path / "merged")
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert merged.keys() == initial.keys()
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in merged.values())  # fp32 masters
    assert any(not torch.equal(merged[k], initial[k]) for k in merged)
