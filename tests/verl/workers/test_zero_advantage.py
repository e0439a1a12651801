"""Skipping zero-advantage samples (``actor.skip_zero_advantage``) gives the update the full pass gives."""

from __future__ import annotations

import copy
import socket
from dataclasses import dataclass
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import trainer_config
from tests.verl.workers.test_actor import VOCAB, one_rank_group, tiny_policy  # noqa: F401 (fixture)
from tests.verl.workers.test_fsdp_workers import synthetic_batch
from verl.protocol import DataProto
from verl.trainer.ppo.core_algos import LOSS_AGG_MODES
from verl.workers.actor import DataParallelPPOActor, layout_mini_batches
from verl.workers.zero_advantage import rows_with_gradient, skips_zero_advantage

CPU = torch.device("cpu")
ZERO_ROWS = {"none": [], "some": [0, 1, 2, 6, 7], "all": list(range(10))}
RATIO_AND_ENTROPY = ("actor/entropy_rollout", "actor/pg_clipfrac", "actor/ppo_kl", "actor/pg_clipfrac_lower")


def actor_cfg(**overrides):
    keys = {"ppo_micro_batch_size_per_gpu": 2, "optim.weight_decay": 0.1, **overrides}
    return trainer_config([f"actor_rollout_ref.actor.{k}={v}" for k, v in keys.items()]).actor_rollout_ref.actor


def full_tensor(t: torch.Tensor) -> torch.Tensor:
    return (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().clone()


@dataclass
class Update:
    metrics: dict[str, float]
    weights: dict[str, torch.Tensor]
    grads: list[dict[str, torch.Tensor]]  # the gradients each optimizer step saw
    optimizer: torch.optim.Optimizer


def update(module: torch.nn.Module, data: DataProto, world_size: int = 1, **overrides) -> Update:
    """One ``update_policy`` with AdamW (weight decay on), recording the gradients of every step."""
    cfg = actor_cfg(**overrides)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=cfg.optim.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    act = DataParallelPPOActor(module, cfg, CPU, world_size, optimizer, scheduler)
    grads: list[dict[str, torch.Tensor]] = []
    optimizer.register_step_pre_hook(lambda *_: grads.append(
        {k: full_tensor(p.grad) for k, p in module.named_parameters() if p.grad is not None}))
    metrics = act.update_policy(data, temperature=0.7)
    return Update(metrics, {k: full_tensor(v) for k, v in module.state_dict().items()}, grads, optimizer)


def run_update(base: torch.nn.Module, batch: DataProto, mini: int, **overrides) -> Update:
    """One update of a copy of ``base`` on one rank with ``mini`` samples per mini-batch; the old
    log-probs are left to the actor (its own separate pass, or its update's forward)."""
    return update(copy.deepcopy(base), layout_mini_batches(copy.deepcopy(batch), 1, mini)[0], **overrides)


def batch_with_zero_rows(zero_rows: list[int]) -> DataProto:
    batch = synthetic_batch(VOCAB)
    batch.batch["advantages"][zero_rows] = 0.0
    return batch


def assert_same_update(got: Update, want: Update) -> None:
    """The same gradients at every optimizer step up to float summation order (the rows that run are
    grouped into other micro-batches), hence the same weights. Adam divides by the gradient's running
    RMS, which makes tiny gradient differences larger in the weights: those are compared at 1% of lr."""
    assert len(got.grads) == len(want.grads)
    for g_got, g_want in zip(got.grads, want.grads):
        assert g_got.keys() == g_want.keys()
        for k in g_want:
            torch.testing.assert_close(g_got[k], g_want[k], atol=1e-6, rtol=1e-4, msg=lambda m: f"grad {k}: {m}")
    for k in want.weights:
        torch.testing.assert_close(got.weights[k], want.weights[k], atol=1e-6, rtol=1e-5, msg=lambda m: f"{k}: {m}")


def test_only_losses_proportional_to_the_advantage_skip():
    assert skips_zero_advantage(actor_cfg())
    assert skips_zero_advantage(actor_cfg(**{"policy_loss.loss_mode": "gspo"}))
    assert not skips_zero_advantage(actor_cfg(skip_zero_advantage=False))
    assert not skips_zero_advantage(actor_cfg(entropy_coeff=0.01))
    assert not skips_zero_advantage(actor_cfg(use_kl_loss=True))


def test_rows_with_gradient_look_at_valid_tokens_only():
    adv = torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [float("nan"), 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 0, 0]])
    assert rows_with_gradient(adv, mask).tolist() == [False, False, True, True]


@pytest.mark.parametrize("loss_mode", ["vanilla", "gspo"])
@pytest.mark.parametrize("agg", LOSS_AGG_MODES)
@pytest.mark.parametrize("zeros", ["none", "some", "all"])
def test_skipping_gives_the_full_passs_update(zeros, agg, loss_mode):
    """Two mini-batches (6 + 4 rows), micro-batches of 2, AdamW with weight decay: the same steps."""
    base = tiny_policy()
    batch = batch_with_zero_rows(ZERO_ROWS[zeros])
    keys = {"loss_agg_mode": agg, "policy_loss.loss_mode": loss_mode}
    full = run_update(base, batch, 6, skip_zero_advantage=False, **keys)
    skip = run_update(base, batch, 6, **keys)
    assert skip.metrics["actor/zero_adv_skipped"] == len(ZERO_ROWS[zeros]) / 10
    assert "actor/zero_adv_skipped" not in full.metrics
    for key in ("actor/pg_loss", "actor/grad_norm"):
        assert skip.metrics[key] == pytest.approx(full.metrics[key], rel=1e-5, abs=1e-8), key
    if zeros != "all":
        assert full.metrics["actor/grad_norm"] > 0
    assert any(not torch.equal(full.weights[k], base.state_dict()[k]) for k in full.weights)
    assert_same_update(skip, full)
    steps = [float(s["step"]) for s in skip.optimizer.state.values()]
    assert steps == [float(s["step"]) for s in full.optimizer.state.values()] == [2.0] * len(steps)


def test_an_all_zero_batch_takes_the_full_passs_step_exactly():
    """No forward at all, yet AdamW advances its step count and applies weight decay as the full pass does."""
    base = tiny_policy()
    batch = batch_with_zero_rows(ZERO_ROWS["all"])
    full = run_update(base, batch, 10, skip_zero_advantage=False)
    skip = run_update(base, batch, 10)
    for k, init in base.state_dict().items():
        assert torch.equal(skip.weights[k], full.weights[k]), k
        assert torch.equal(init, torch.zeros_like(init)) or not torch.equal(skip.weights[k], init), k  # decayed
    for s_full, s_skip in zip(full.optimizer.state.values(), skip.optimizer.state.values(), strict=True):
        assert s_full.keys() == s_skip.keys()
        assert all(torch.equal(s_full[key], s_skip[key]) for key in s_full)
    assert skip.metrics["actor/pg_loss"] == 0.0 and skip.metrics["actor/grad_norm"] == 0.0
    assert skip.metrics["actor/zero_adv_skipped"] == 1.0
    for key in RATIO_AND_ENTROPY:  # nothing ran: no statistics rather than made-up numbers
        assert key not in skip.metrics and key in full.metrics


def test_ratio_and_entropy_metrics_are_over_the_rows_that_ran():
    """One mini-batch: the old log-probs are the update's forward (ratio 1) on the rows that ran."""
    base = tiny_policy()
    some = batch_with_zero_rows(ZERO_ROWS["some"])
    skip = run_update(base, some, 10)
    assert skip.metrics["actor/ppo_kl"] == 0.0 and skip.metrics["actor/pg_clipfrac"] == 0.0
    ran = [i for i in range(10) if i not in ZERO_ROWS["some"]]
    alone = run_update(base, some.select_idxs(ran), 10)
    assert skip.metrics["actor/entropy_rollout"] == pytest.approx(alone.metrics["actor/entropy_rollout"], rel=1e-5)


# --------------------------------------------------------------------------- two ranks (FSDP2, gloo)
def _two_rank_worker(rank: int, port: int, batch: DataProto, out: dict) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))  # a collective missing on one rank fails, not hangs
    mesh = init_device_mesh("cpu", (2,))
    chunk = layout_mini_batches(batch, 2, 6)[rank]
    results = {}
    for skip in (False, True):
        module = tiny_policy()
        for layer in module.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(module, mesh=mesh)
        results[skip] = update(module, copy.deepcopy(chunk), world_size=2, skip_zero_advantage=skip)
        results[skip].optimizer = None  # DTensor state stays in the process
    out[rank] = results
    dist.destroy_process_group()


def test_two_ranks_where_one_has_only_zero_rows():
    """Mini-batch 1 (rows 0-5): rank 0 holds rows 0-2, all zero, rank 1 rows 3-5, so rank 0 runs filler
    passes to join FSDP2's collectives; mini-batch 2 (rows 6-9) is all zero on both ranks."""
    batch = batch_with_zero_rows([0, 1, 2, 6, 7, 8, 9])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.start_processes(_two_rank_worker, args=(port, batch, out), nprocs=2, start_method="spawn")
        out = dict(out)
    one_rank = run_update(tiny_policy(), batch, 6, skip_zero_advantage=False)
    for rank in (0, 1):
        full, skip = out[rank][False], out[rank][True]
        assert skip.metrics.keys() == out[0][True].metrics.keys()  # the driver averages each key over ranks
        assert skip.metrics["actor/zero_adv_skipped"] == 0.7
        assert skip.metrics["actor/grad_norm"] == pytest.approx(full.metrics["actor/grad_norm"], rel=1e-5)
        assert_same_update(skip, full)
        assert_same_update(skip, one_rank)
