"""The memory plan's arithmetic on known configs (Qwen2.5-3B/7B from their published numbers)."""

from __future__ import annotations

import json

import pytest

from benchmarks.reference_models import qwen25_config, write_model_folder
from tests.conftest import trainer_config
from verl.utils.memory_plan import GIB, MemoryPlanError, ModelShape, check_plan, main, memory_plan

REFERENCE = ["trainer.device=cuda", "trainer.n_gpus_per_node=4", "actor_rollout_ref.model.enable_gradient_checkpointing=True",
             "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32", "data.max_prompt_length=2048",
             "data.max_response_length=512"]


def qwen2_params(hidden, inter, layers, heads, kv_heads, vocab, tied) -> int:
    """By hand: embeddings (+ untied head), per layer q/k/v with biases, o, SwiGLU, two norms; final norm."""
    kv = kv_heads * hidden // heads
    layer = hidden * hidden + hidden + 2 * (hidden * kv + kv) + hidden * hidden + 3 * hidden * inter + 2 * hidden
    return vocab * hidden * (1 if tied else 2) + layers * layer + hidden


@pytest.mark.parametrize("size,published", [("3b", 3_085_938_688), ("7b", 7_615_616_512)])
def test_parameter_counts_from_config_alone(size, published):
    shape = ModelShape.from_config(qwen25_config(size))
    assert shape.params == published == qwen2_params(shape.hidden, shape.intermediate, shape.layers, shape.heads,
                                                     shape.kv_heads, shape.vocab, size == "3b")
    assert shape.largest_param == shape.vocab * shape.hidden  # the embedding


def test_reference_7b_plan_per_rank():
    cfg = trainer_config(REFERENCE)
    shape = ModelShape.from_config(qwen25_config("7b"))
    p, w = shape.params, 4
    plan = memory_plan(cfg, shape, device_memory=80 * GIB)
    r = plan["per_rank"]
    assert (r["params"], r["gradients"], r["optimizer"]) == (4 * p // w, 4 * p // w, 8 * p // w)
    assert r["rollout"] == 2 * p and r["reference"] == 0 and r["critic"] == 0
    assert r["kv_cache"] == 64 * 2560 * 28 * 2 * 4 * 128 * 2  # rollout micro-batch x tokens x layers x K,V x kv dim
    tokens = 32 * 2560
    per_token_layer = 2 * (12 * 3584 + 4 * 512 + 4 * 18944)
    assert r["activations_without_checkpointing"] == 28 * tokens * per_token_layer
    assert r["activations_with_checkpointing"] == 28 * tokens * 2 * 3584 + tokens * per_token_layer
    assert r["transient_logits"] == 32 * 513 * 152064 * (3 * 2 + 4)
    assert r["transient_sync"] == 2 * 152064 * 3584 * 2  # all-gather output + the tensor handed over
    root = 2 * 152064 * 3584 + 3584  # untied embedding and head, final norm
    assert r["fsdp_unsharded"] == (root + 2 * (p - root) // 28) * (2 + 4)
    static = r["params"] + r["optimizer"] + r["rollout"] + r["runtime"]
    assert plan["phases"]["update"] == (static + r["gradients"] + r["activations_with_checkpointing"]
                                        + r["transient_logits"] + r["fsdp_unsharded"])
    assert plan["total"] == plan["phases"]["update"] and round(plan["total"] / GIB, 1) == 109.2
    assert plan["fits"] is False
    smaller = memory_plan(trainer_config(REFERENCE + ["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8"]),
                          shape, device_memory=80 * GIB)
    assert smaller["fits"] and round(smaller["total"] / GIB, 1) == 66.5  # the documented fix


def test_offload_moves_state_off_the_gpu_and_is_host_memory_on_cpu():
    shape = ModelShape.from_config(qwen25_config("3b"))
    base = memory_plan(trainer_config(REFERENCE), shape)
    off = memory_plan(trainer_config(REFERENCE + ["actor_rollout_ref.actor.fsdp_config.optimizer_offload=True"]), shape)
    assert off["phases"]["generation"] == base["phases"]["generation"] - base["per_rank"]["optimizer"]
    assert off["phases"]["update"] == base["phases"]["update"]  # the update brings the moments back
    param = memory_plan(trainer_config(REFERENCE + ["actor_rollout_ref.actor.fsdp_config.param_offload=True"]), shape)
    assert param["per_rank"]["params"] == param["per_rank"]["optimizer"] == 0
    cpu = memory_plan(trainer_config(REFERENCE[1:] + ["actor_rollout_ref.actor.fsdp_config.param_offload=True"]), shape)
    assert cpu["per_rank"]["params"] == 4 * shape.params // 4 and cpu["per_rank"]["rollout"] == 4 * shape.params


def test_cpu_ranks_share_the_host_and_a_strict_plan_stops():
    shape = ModelShape.from_config(qwen25_config("3b"))
    plan = memory_plan(trainer_config(["trainer.n_gpus_per_node=2"]), shape, device_memory=64 * GIB)
    assert plan["ranks_sharing_device"] == 2 and plan["fits"] == (2 * plan["total"] <= 64 * GIB)
    with pytest.warns(UserWarning, match="the memory plan needs"):
        check_plan({**plan, "fits": False}, strict=False)
    with pytest.raises(MemoryPlanError, match="ppo_micro_batch_size_per_gpu.*strict_memory_plan=False"):
        check_plan({**plan, "fits": False}, strict=True)


def test_cli_reads_config_json_only_and_prints_json(tmp_path, capsys):
    folder = write_model_folder("3b", tmp_path / "qwen2.5-3b")  # config.json, no weights
    assert [p.name for p in folder.iterdir()] == ["config.json"]
    plan = main([f"actor_rollout_ref.model.path={folder}", *REFERENCE, "--json", "--device_memory_gb", "80"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == plan and printed["fits"] and set(printed["per_rank"]) >= {
        "params", "gradients", "optimizer", "rollout", "reference", "critic", "activations_with_checkpointing",
        "activations_without_checkpointing", "transient_logits", "transient_sync"}
    assert round(printed["total"] / GIB, 1) == 65.9


def test_vllm_rollout_is_its_budget_or_the_weights_plus_a_fixed_kv_cache():
    shape = ModelShape.from_config(qwen25_config("7b"))
    vllm = REFERENCE + ["actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.gpu_memory_utilization=0.5"]
    budget = memory_plan(trainer_config(vllm), shape, device_memory=80 * GIB)["per_rank"]
    assert (budget["rollout"], budget["kv_cache"]) == (40 * GIB, 0)
    fixed = memory_plan(trainer_config(vllm + ["actor_rollout_ref.rollout.kv_cache_memory_gib=2"]), shape,
                        device_memory=80 * GIB)["per_rank"]
    assert (fixed["rollout"], fixed["kv_cache"]) == (2 * shape.params + 2 * GIB, 0)


def test_a_vision_language_config_counts_its_vision_tower(tiny_vl_model_dir, tiny_model_dir):
    from transformers import AutoConfig

    vl = ModelShape.from_config(AutoConfig.from_pretrained(tiny_vl_model_dir))
    text = AutoConfig.from_pretrained(tiny_vl_model_dir).get_text_config()
    assert (vl.hidden, vl.layers, vl.vocab) == (text.hidden_size, text.num_hidden_layers, text.vocab_size)
    text_only = ModelShape.from_config(AutoConfig.from_pretrained(tiny_model_dir))
    assert vl.params > text_only.params  # same language-model sizes plus the vision tower
