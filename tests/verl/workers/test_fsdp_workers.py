"""FSDP2 actor workers on real Ray + gloo: rank-count parity, checkpoints, and the model merger."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM

from tests.conftest import REPO_ROOT, trainer_config
from verl.protocol import DataProto
from verl.single_controller import RankPool, RayWorkerGroup
from verl.workers.actor import layout_mini_batches, response_log_probs
from verl.workers.fsdp_workers import ActorRolloutRefWorker

PROMPT, RESPONSE, N = 12, 6, 10


def synthetic_batch(vocab: int, seed: int = 0) -> DataProto:
    """Left-padded prompts + right-padded responses of varying lengths, with fixed advantages."""
    g = torch.Generator().manual_seed(seed)
    prompt_len = torch.randint(3, PROMPT + 1, (N,), generator=g)
    resp_len = torch.randint(1, RESPONSE + 1, (N,), generator=g)
    prompt_mask = (torch.arange(PROMPT)[None, :] >= PROMPT - prompt_len[:, None]).long()
    resp_mask = (torch.arange(RESPONSE)[None, :] < resp_len[:, None]).long()
    prompts = torch.randint(5, vocab, (N, PROMPT), generator=g) * prompt_mask
    responses = torch.randint(5, vocab, (N, RESPONSE), generator=g) * resp_mask
    attention = torch.cat([prompt_mask, resp_mask], 1)
    return DataProto.from_dict({
        "prompts": prompts, "responses": responses, "response_mask": resp_mask,
        "input_ids": torch.cat([prompts, responses], 1), "attention_mask": attention,
        "position_ids": (attention.cumsum(-1) - 1).clamp_min(0),
        "advantages": torch.randn(N, 1, generator=g).expand(N, RESPONSE) * resp_mask,
    }, meta_info={"temperature": 1.0})


def make_pool(model_dir: str, world_size: int, actor_cls: type = ActorRolloutRefWorker,
              overrides: tuple[str, ...] = ()) -> RankPool:
    """``world_size`` CPU ranks with an initialised actor role (``overrides``: more trainer keys)."""
    cfg = trainer_config([f"actor_rollout_ref.model.path={model_dir}", "actor_rollout_ref.actor.optim.lr=1e-2",
                          "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
                          "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=3",
                          "actor_rollout_ref.actor.entropy_coeff=0.01", *overrides])
    pool = RankPool({"actor": (actor_cls, dict(config=OmegaConf.to_container(cfg, resolve=True), model_path=model_dir,
                                               total_training_steps=4, with_ref=False))}, world_size, device="cpu")
    pool.group("actor").execute_all("init_model")
    return pool


def train_two_updates(wg: RayWorkerGroup, batch: DataProto) -> list[dict[str, float]]:
    metrics = []
    for _ in range(2):
        batch.batch["old_log_probs"] = wg.dispatch_dp("compute_log_prob", batch).batch["old_log_probs"]
        # 2 mini-batches of 4 samples + 1 of 2: several optimizer steps, uneven last one
        outs = wg.execute_per_rank("update_actor", layout_mini_batches(batch, wg.world_size, 4))
        metrics.append({k: float(np.mean([o.meta_info["metrics"][k] for o in outs]))
                        for k in outs[0].meta_info["metrics"]})
    return metrics


def merge(actor_dir: Path, out: Path) -> Path:
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts/model_merger.py"), "merge", "--backend", "fsdp",
                    "--local_dir", str(actor_dir), "--target_dir", str(out)], check=True, capture_output=True)
    return out


@pytest.fixture(scope="module")
def trained(ray_cluster, tiny_model_dir, tmp_path_factory):
    """The same data trained on 1 rank and on 2 ranks; both checkpointed and merged."""
    root = tmp_path_factory.mktemp("parity")
    vocab = AutoModelForCausalLM.from_pretrained(tiny_model_dir).config.vocab_size
    out = {}
    for ws in (1, 2):
        pool = make_pool(tiny_model_dir, ws)
        wg = pool.group("actor")
        batch = synthetic_batch(vocab)
        metrics = train_two_updates(wg, batch)
        wg.execute_all("save_checkpoint", str(root / f"ws{ws}" / "actor"))
        after = wg.dispatch_dp("compute_log_prob", batch).batch["old_log_probs"]
        pool.shutdown()
        out[ws] = dict(metrics=metrics, logp=after, batch=batch,
                       merged=merge(root / f"ws{ws}" / "actor", root / f"merged{ws}"))
    return out


def test_two_ranks_train_like_one(trained, tiny_model_dir):
    for m1, m2 in zip(trained[1]["metrics"], trained[2]["metrics"]):
        assert m1["actor/pg_loss"] == pytest.approx(m2["actor/pg_loss"], abs=1e-5)
        assert m1["actor/entropy"] == pytest.approx(m2["actor/entropy"], rel=1e-5)
        assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)
    init = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    w1 = AutoModelForCausalLM.from_pretrained(trained[1]["merged"]).state_dict()
    w2 = AutoModelForCausalLM.from_pretrained(trained[2]["merged"]).state_dict()
    assert w1.keys() == w2.keys()
    # Same update up to float summation order. Compared over the whole model: Adam turns pure rounding
    # noise into lr-sized steps where the true gradient is exactly zero (e.g. key biases, which softmax
    # ignores), so single elements may differ while the update as a whole agrees.
    d1 = torch.cat([(w1[k] - init[k]).flatten() for k in sorted(w1)])
    d2 = torch.cat([(w2[k] - init[k]).flatten() for k in sorted(w1)])
    assert d1.norm() > 0
    assert (d1 - d2).norm() <= 1e-3 * d1.norm()


def test_update_changes_weights_and_merged_model_reproduces_actor(trained, tiny_model_dir):
    merged = AutoModelForCausalLM.from_pretrained(trained[2]["merged"]).eval()
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    assert any(not torch.equal(initial[k], v) for k, v in merged.state_dict().items())
    batch = trained[2]["batch"]
    with torch.no_grad():
        logp, _ = response_log_probs(merged, batch.batch, torch.device("cpu"), 1.0, remove_padding=False)
    mask = batch.batch["response_mask"].bool()
    torch.testing.assert_close(logp[mask], trained[2]["logp"][mask], atol=1e-5, rtol=1e-5)


def test_merger_rejects_a_folder_that_is_not_a_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/model_merger.py"), "merge", "--backend", "fsdp",
                           "--local_dir", str(tmp_path), "--target_dir", str(tmp_path / "out")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "not an actor checkpoint folder" in proc.stderr
    assert not (tmp_path / "out").exists()
