"""Start-up loading (rank 0 reads, shards broadcast) and the streamed weight sync into the rollout engine."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.verl.workers.sync_probe import SyncProbe
from tests.verl.workers.test_fsdp_workers import make_pool, synthetic_batch
from verl.utils.model import load_causal_lm
from verl.workers.actor import layout_mini_batches
from verl.workers.rollout.hf_rollout import HFRollout


@pytest.mark.parametrize("model_fixture, world_size", [("tiny_model_dir", 1), ("tiny_model_dir", 2),
                                                       ("tiny_vl_model_dir", 2)], ids=["text-1", "text-2", "vl-2"])
def test_streamed_sync_is_bit_identical_to_the_full_gather(ray_cluster, request, model_fixture, world_size):
    """Text policies and a Qwen2.5-VL policy (visual mode: vision tower and language model in one stream)."""
    model_dir = request.getfixturevalue(model_fixture)
    pool = make_pool(model_dir, world_size, actor_cls=SyncProbe)
    wg = pool.group("actor")
    try:
        checkpoint = load_causal_lm(model_dir, torch.float32)
        initial = wg.execute_all("rollout_state")
        for rank_state in initial:  # start-up: the broadcast shards, streamed into an empty copy, are the checkpoint
            assert rank_state.keys() == checkpoint.state_dict().keys()
            for k, v in checkpoint.state_dict().items():
                assert torch.equal(rank_state[k], v), k
        for rank_buffers in wg.execute_all("rollout_buffers"):  # e.g. rotary inv_freq, not in the state dict
            for k, v in checkpoint.named_buffers():
                assert torch.equal(rank_buffers[k], v), k
        tied = checkpoint.config.get_text_config().tie_word_embeddings
        assert wg.execute_all("rollout_is_tied") == [tied] * world_size

        batch = synthetic_batch(checkpoint.config.get_text_config().vocab_size)
        batch.batch["old_log_probs"] = wg.dispatch_dp("compute_log_prob", batch).batch["old_log_probs"]
        wg.execute_per_rank("update_actor", layout_mini_batches(batch, world_size, 4))  # ends with a sync
        synced, gathered = wg.execute_all("rollout_state"), wg.execute_all("full_gather_for_rollout")
        assert any(not torch.equal(synced[0][k], initial[0][k]) for k in synced[0])  # the update moved weights
        for rank_synced, rank_gathered in zip(synced, gathered):
            assert rank_synced.keys() == rank_gathered.keys()
            for k in rank_gathered:
                assert torch.equal(rank_synced[k], rank_gathered[k]), k
    finally:
        pool.shutdown()


@pytest.fixture(scope="module")
def engine(tiny_model_dir) -> HFRollout:
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    return HFRollout(model, torch.device("cpu"), pad_token_id=0, eos_token_ids=[1], response_length=4,
                     micro_batch_size=2)


def params_of(engine: HFRollout) -> list[tuple[str, torch.Tensor]]:
    return [(n, p.detach().clone()) for n, p in engine.model.named_parameters()]


def test_engine_copies_every_streamed_parameter_into_place(engine):
    stream = [(n, torch.full_like(t, 0.5)) for n, t in params_of(engine)]
    engine.load_weights(iter(stream))
    assert all(torch.equal(p, torch.full_like(p, 0.5)) for p in engine.model.parameters())
    assert torch.equal(engine.model.lm_head.weight, torch.full_like(engine.model.lm_head.weight, 0.5))  # tied


def test_engine_rejects_a_stream_that_does_not_match_its_model(engine):
    good = params_of(engine)
    name, tensor = good[1]
    with pytest.raises(ValueError, match="'lm_head.weight' is not a parameter.*tied weights are sent once"):
        engine.load_weights(good + [("lm_head.weight", good[0][1])])
    with pytest.raises(ValueError, match=f"'{name}' arrived twice"):
        engine.load_weights(good + [(name, tensor)])
    with pytest.raises(ValueError, match="1 parameters never arrived"):
        engine.load_weights(good[:-1])
    with pytest.raises(ValueError, match=f"'{name}' arrived as .* torch.bfloat16"):
        engine.load_weights([(name, tensor.to(torch.bfloat16))])
    with pytest.raises(ValueError, match=f"'{name}' arrived as \\(3,\\)"):
        engine.load_weights([(name, torch.zeros(3))])
