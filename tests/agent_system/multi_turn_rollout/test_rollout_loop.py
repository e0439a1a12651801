"""The multi-turn loop with a real hf rollout engine (tiny model) and the echo environment."""

from __future__ import annotations

import numpy as np
import torch

from agent_system.environments.echo_manager import EchoEnvironmentManager
from agent_system.multi_turn_rollout.metrics import rollout_metrics
from agent_system.multi_turn_rollout.rollout_loop import TrajectoryCollector
from verl.utils.model import eos_token_ids, load_causal_lm, load_tokenizer
from verl.workers.rollout.base import pack_responses
from verl.workers.rollout.hf_rollout import HFRollout

SAMPLING = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": -1, "seed": 7}


def setup(model_dir: str, num_envs: int, max_steps: int = 3, prompt_len: int = 96, response_len: int = 5):
    tok = load_tokenizer(model_dir)
    engine = HFRollout(load_causal_lm(model_dir, torch.float32), torch.device("cpu"), tok.pad_token_id,
                       eos_token_ids(tok, model_dir), response_len, micro_batch_size=4)
    envs = EchoEnvironmentManager(num_envs, ["apple", "river"], max_steps=max_steps, history_length=2)
    return tok, engine, envs, TrajectoryCollector(tok, prompt_len, "left", max_steps)


def test_one_sample_per_step_with_exact_sampled_tokens(tiny_model_dir):
    tok, engine, envs, collector = setup(tiny_model_dir, num_envs=6)
    seen = []

    def generate(prompts):
        out = engine.generate(prompts)
        seen.append((prompts.batch["input_ids"].clone(), out.batch["responses"].clone()))
        return out

    res = collector.collect([{}, {}, {}], seeds=[0, 1, 0], group_n=2, envs=envs, generate_fn=generate,
                            sampling=SAMPLING)
    samples = res.samples
    nt = samples.non_tensor_batch
    assert len(samples) == int(res.episode_lengths.sum())  # one sample per (trajectory, step)
    # token-in/token-out: input_ids are exactly the engine's prompt ids followed by its sampled ids
    fed = torch.cat([torch.cat(p_r, dim=1) for p_r in ((p, r) for p, r in seen)])
    assert torch.equal(samples.batch["input_ids"], fed)
    assert torch.equal(samples.batch["responses"], torch.cat([r for _, r in seen]))
    # groups: copies share uid (and game), trajectories have their own traj_uid
    assert len(set(nt["uid"])) == 3 and len(set(nt["traj_uid"])) == 6
    for traj in set(nt["traj_uid"]):
        rows = nt["traj_uid"] == traj
        assert sorted(nt["step_id"][rows]) == list(range(rows.sum()))
        assert np.allclose(nt["episode_reward"][rows], nt["step_reward"][rows].sum())
    # seeds 0 and 0 -> the same word for groups 0 and 2
    assert envs.games[0].word == envs.games[4].word
    mask = samples.batch["response_mask"]
    assert (mask.sum(-1) >= 1).all()
    metrics = rollout_metrics(res)
    assert 0 <= metrics["episode/valid_action_ratio"] <= 1 and "episode/echo_success_rate" in metrics


def test_same_seed_same_rollout(tiny_model_dir):
    tok, engine, envs, collector = setup(tiny_model_dir, num_envs=2)
    runs = [collector.collect([{}, {}], [3, 4], 1, envs, engine.generate, SAMPLING) for _ in range(2)]
    assert torch.equal(runs[0].samples.batch["input_ids"], runs[1].samples.batch["input_ids"])


def test_prompt_truncation_modes(tiny_model_dir):
    tok, engine, envs, _ = setup(tiny_model_dir, num_envs=1)
    long_text = "word " * 200
    for mode in ("left", "right"):
        batch, truncated = TrajectoryCollector(tok, 32, mode, 1).prompts.build([long_text])
        assert truncated == 1 and batch.batch["attention_mask"].sum() == 32
    try:
        TrajectoryCollector(tok, 32, "error", 1).prompts.build([long_text])
    except ValueError as err:
        assert "data.max_prompt_length" in str(err)
    else:
        raise AssertionError("truncation=error must raise")


def test_the_engine_stops_at_eos_and_masks_after_it(tiny_model_dir):
    tok, engine, _, collector = setup(tiny_model_dir, num_envs=1, response_len=3)
    packed = pack_responses(torch.tensor([[11, tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id],
                                          [tok.pad_token_id, 12, 13]]), 3, tok.pad_token_id, engine.eos_token_ids)
    assert packed["response_mask"].tolist() == [[1, 1, 0], [1, 1, 1]]  # a sampled pad id is a real token
