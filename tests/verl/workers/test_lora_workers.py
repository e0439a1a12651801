"""LoRA on the FSDP2 actor (real Ray + gloo): rank parity, adapter-only checkpoints, the merged weight sync
into the rollout engine, and both merger modes reproducing the trained actor."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from peft import PeftModel
from transformers import AutoModelForCausalLM

from tests.conftest import REPO_ROOT
from tests.verl.workers.sync_probe import SyncProbe
from tests.verl.workers.test_fsdp_workers import make_pool, synthetic_batch, train_two_updates
from verl.protocol import DataProto
from verl.workers.actor import response_log_probs

LORA = ("actor_rollout_ref.model.lora_rank=4", "actor_rollout_ref.model.lora_alpha=8")


def merge(actor_dir: Path, out: Path, mode: str) -> Path:
    subprocess.run([sys.executable, str(REPO_ROOT / "scripts/model_merger.py"), "merge", "--local_dir", str(actor_dir),
                    "--target_dir", str(out), "--lora_mode", mode], check=True, capture_output=True)
    return out


def prompts_of(batch: DataProto) -> DataProto:
    p = batch.batch["prompts"]
    return DataProto.from_dict({"input_ids": p, "attention_mask": batch.batch["attention_mask"][:, :p.shape[1]]})


@pytest.fixture(scope="module")
def runs(ray_cluster, tiny_model_dir, tmp_path_factory):
    """The same LoRA training on 1 and 2 ranks, checkpointed; on 2 ranks also the engine experiment."""
    root = tmp_path_factory.mktemp("lora")
    vocab = AutoModelForCausalLM.from_pretrained(tiny_model_dir).config.vocab_size
    out = {}
    for ws in (1, 2):
        pool = make_pool(tiny_model_dir, ws, actor_cls=SyncProbe, overrides=LORA)
        wg = pool.group("actor")
        batch = synthetic_batch(vocab)
        run = dict(batch=batch, metrics=train_two_updates(wg, batch), actor=root / f"ws{ws}" / "actor")
        wg.execute_all("save_checkpoint", str(run["actor"]))
        run["logp"] = wg.dispatch_dp("compute_log_prob", batch).batch["old_log_probs"]
        run["ref_logp"] = wg.dispatch_dp("compute_ref_log_prob", batch).batch["ref_log_prob"]
        run["engine"] = wg.execute_all("rollout_state")[0]
        if ws == 2:
            prompts = prompts_of(batch)
            run["before"] = wg.execute_all("greedy", prompts)[0]
            wg.execute_all("perturb_adapters", 7)
            run["unsynced"] = wg.execute_all("greedy", prompts)[0]
            wg.execute_all("sync_rollout_weights")
            run["synced"] = wg.execute_all("greedy", prompts)[0]
        pool.shutdown()
        out[ws] = run
    return out


def logp_of(model: torch.nn.Module, batch: DataProto) -> torch.Tensor:
    with torch.no_grad():
        return response_log_probs(model.eval(), batch.batch, torch.device("cpu"), 1.0, remove_padding=False)[0]


def adapters_in(actor_dir: Path) -> dict[str, torch.Tensor]:
    """The adapter weights of a checkpoint, read from its DCP shards (any world size, one process)."""
    meta = dcp.FileSystemReader(str(actor_dir / "dcp")).read_metadata().state_dict_metadata
    state = {"model": {k.removeprefix("model."): torch.empty(m.size) for k, m in meta.items() if k.startswith("model.")}}
    dcp.load(state, checkpoint_id=str(actor_dir / "dcp"), no_dist=True)
    return state["model"]


def test_two_ranks_train_like_one(runs):
    for m1, m2 in zip(runs[1]["metrics"], runs[2]["metrics"]):
        assert m1["actor/pg_loss"] == pytest.approx(m2["actor/pg_loss"], abs=1e-5)
        assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)
    a1, a2 = adapters_in(runs[1]["actor"]), adapters_in(runs[2]["actor"])
    assert a1.keys() == a2.keys() and len(a1) > 0
    d1 = torch.cat([a1[k].flatten() for k in sorted(a1) if "lora_B" in k])  # B starts at 0: its value is the update
    d2 = torch.cat([a2[k].flatten() for k in sorted(a1) if "lora_B" in k])
    assert d1.norm() > 0
    assert (d1 - d2).norm() <= 1e-3 * d1.norm()


def test_checkpoint_holds_only_the_adapters_and_their_optimizer_state(runs):
    meta = dcp.FileSystemReader(str(runs[2]["actor"] / "dcp")).read_metadata().state_dict_metadata
    weights = [k for k in meta if k.startswith("model.")]
    moments = [k for k in meta if k.startswith("optim.state.")]
    assert weights and all(".lora_A." in k or ".lora_B." in k for k in weights)
    assert moments and all(".lora_A." in k or ".lora_B." in k for k in moments)
    assert (runs[2]["actor"] / "lora/adapter_config.json").exists()


def test_merged_release_reproduces_the_actor_and_is_what_the_engine_samples_from(runs, tiny_model_dir, tmp_path):
    merged = AutoModelForCausalLM.from_pretrained(merge(runs[2]["actor"], tmp_path / "merged", "merged"))
    assert set(merged.state_dict()) == set(AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict())
    batch, mask = runs[2]["batch"], runs[2]["batch"].batch["response_mask"].bool()
    torch.testing.assert_close(logp_of(merged, batch)[mask], runs[2]["logp"][mask], atol=1e-5, rtol=1e-5)
    engine = runs[2]["engine"]  # merged by the weight sync, compared with peft's own merge_and_unload
    for name, tensor in merged.state_dict().items():
        torch.testing.assert_close(engine[name], tensor, atol=1e-6, rtol=1e-6)


def test_adapter_release_loads_with_peft_and_reproduces_the_actor(runs, tiny_model_dir, tmp_path):
    folder = merge(runs[1]["actor"], tmp_path / "adapter", "adapter")
    assert not (folder / "model.safetensors").exists()  # the adapter alone, not a model copy
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder)
    batch, mask = runs[1]["batch"], runs[1]["batch"].batch["response_mask"].bool()
    torch.testing.assert_close(logp_of(model, batch)[mask], runs[1]["logp"][mask], atol=1e-5, rtol=1e-5)


def test_the_reference_is_the_base_model_with_the_adapters_off(runs, tiny_model_dir):
    batch, mask = runs[2]["batch"], runs[2]["batch"].batch["response_mask"].bool()
    base = logp_of(AutoModelForCausalLM.from_pretrained(tiny_model_dir), batch)
    torch.testing.assert_close(runs[2]["ref_logp"][mask], base[mask], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(runs[2]["logp"][mask], base[mask], atol=1e-3)  # the actor itself has moved


def test_a_changed_adapter_reaches_the_engine_only_through_the_sync(runs):
    run = runs[2]
    assert torch.equal(run["unsynced"], run["before"])  # the engine is its own copy: no sync, no change
    assert not torch.equal(run["synced"], run["before"])  # after the sync it samples from base + new adapter


def test_merger_adapter_mode_rejects_a_full_checkpoint(runs, tmp_path):
    full = tmp_path / "full"
    (full / "huggingface").mkdir(parents=True)
    (full / "dcp").mkdir()
    for f in ("huggingface/config.json", "dcp/.metadata"):
        (full / f).write_bytes((runs[1]["actor"] / f).read_bytes())
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "scripts/model_merger.py"), "merge", "--local_dir",
                           str(full), "--target_dir", str(tmp_path / "out"), "--lora_mode", "adapter"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "holds a full model" in proc.stderr
    assert not (tmp_path / "out").exists()
