"""The actor's update on one rank: old log-probs taken from the update's forward equal a separate pass."""

from __future__ import annotations

import copy
import socket

import pytest
import torch
import torch.distributed as dist
from transformers import Qwen2Config, Qwen2ForCausalLM

from tests.conftest import trainer_config
from tests.verl.workers.test_fsdp_workers import synthetic_batch
from verl.protocol import DataProto
from verl.utils.torch_functional import masked_mean
from verl.workers.actor import DataParallelPPOActor, dropout_active, layout_mini_batches, response_log_probs

CPU = torch.device("cpu")
VOCAB = 96


@pytest.fixture(scope="module", autouse=True)
def one_rank_group():
    """A gloo group of one process: the actor all-reduces its loss normalisers."""
    if dist.is_initialized():
        yield
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def tiny_policy(**config) -> torch.nn.Module:
    torch.manual_seed(0)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, **config))


def actor(module: torch.nn.Module, remove_padding: bool, **overrides) -> DataParallelPPOActor:
    keys = {"ppo_micro_batch_size_per_gpu": 3, **overrides}
    cfg = trainer_config([f"actor_rollout_ref.actor.{k}={v}" for k, v in keys.items()]).actor_rollout_ref.actor
    optimizer = torch.optim.SGD(module.parameters(), lr=1.0)  # the step is the clipped gradient itself
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    return DataParallelPPOActor(module, cfg, CPU, 1, optimizer, scheduler, remove_padding=remove_padding)


def one_mini_batch(batch: DataProto) -> DataProto:
    return layout_mini_batches(batch, 1, len(batch))[0]


def update(module: torch.nn.Module, batch: DataProto, remove_padding: bool, separate_pass: bool, **overrides
           ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """(metrics, weights after the step) of one update; ``separate_pass``: old log-probs computed first."""
    act = actor(module, remove_padding, **overrides)
    data = one_mini_batch(copy.deepcopy(batch))
    if separate_pass:
        data.batch["old_log_probs"], _ = act.compute_log_prob(data, 4, temperature=0.7)
    return act.update_policy(data, temperature=0.7), {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("remove_padding", [False, True])
def test_update_forward_gives_the_separate_passs_old_log_probs(remove_padding):
    module = tiny_policy()
    batch = synthetic_batch(VOCAB)
    act = actor(module, remove_padding)
    old, _ = act.compute_log_prob(batch, 4, temperature=0.7)  # eval mode, no grad, other micro-batches
    module.train()
    reused, _ = response_log_probs(module, batch.batch, CPU, 0.7, remove_padding)  # train mode, with grad
    assert reused.requires_grad
    mask = batch.batch["response_mask"].bool()
    torch.testing.assert_close(reused.detach()[mask], old[mask], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("remove_padding", [False, True])
def test_reused_old_log_probs_give_the_same_loss_gradient_and_step(remove_padding):
    batch = synthetic_batch(VOCAB)
    base = tiny_policy()
    act = actor(base, remove_padding)
    assert act.old_log_probs_from_update(one_mini_batch(batch))
    separate, w_separate = update(copy.deepcopy(base), batch, remove_padding, separate_pass=True)
    reused, w_reused = update(copy.deepcopy(base), batch, remove_padding, separate_pass=False)
    for key in ("actor/pg_loss", "actor/grad_norm"):
        assert reused[key] == pytest.approx(separate[key], rel=1e-5, abs=1e-7), key
    assert reused["actor/ppo_kl"] == 0.0 and reused["actor/pg_clipfrac"] == 0.0
    assert any(not torch.equal(w_reused[k], base.state_dict()[k]) for k in w_reused)
    for k in w_separate:
        torch.testing.assert_close(w_reused[k], w_separate[k], atol=1e-6, rtol=1e-5)
    # the old policy's entropy is still reported, as the separate pass reports it
    _, entropy = act.compute_log_prob(batch, 4, temperature=0.7, with_entropy=True)
    expected = float(masked_mean(entropy, batch.batch["response_mask"]))
    assert reused["actor/entropy_rollout"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("case", ["two_epochs", "two_mini_batches", "dropout"])
def test_without_a_single_pass_the_actor_runs_the_separate_pass_itself(case):
    """When the update's forward is not the old policy's, missing old log-probs are computed first."""
    batch = synthetic_batch(VOCAB)
    base = tiny_policy(attention_dropout=0.1 if case == "dropout" else 0.0)
    overrides = {"ppo_epochs": 2} if case == "two_epochs" else {}
    if case == "dropout":
        assert dropout_active(base)
    if case == "two_mini_batches":
        act = actor(base, False)
        halves = layout_mini_batches(batch, 1, len(batch) // 2)[0]
        assert not act.old_log_probs_from_update(halves)
        return
    assert not actor(base, False, **overrides).old_log_probs_from_update(one_mini_batch(batch))
    torch.manual_seed(3)
    separate, w_separate = update(copy.deepcopy(base), batch, False, separate_pass=True, **overrides)
    torch.manual_seed(3)
    missing, w_missing = update(copy.deepcopy(base), batch, False, separate_pass=False, **overrides)
    assert "actor/entropy_rollout" in missing
    assert missing["actor/pg_loss"] == pytest.approx(separate["actor/pg_loss"], rel=1e-6)
    for k in w_separate:
        torch.testing.assert_close(w_missing[k], w_separate[k], atol=1e-6, rtol=1e-5)
