"""The hf rollout engine samples from the policy being trained, whatever generation_config.json says."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from agent_system.multi_turn_rollout.rollout_loop import PromptBuilder, position_ids_from_mask
from verl.protocol import DataProto
from verl.utils.model import eos_token_ids, load_causal_lm, load_tokenizer
from verl.utils.packing import response_outputs
from verl.workers.actor import DataParallelPPOActor
from verl.workers.rollout.hf_rollout import HFRollout

TEMPERATURE = 0.7
PROMPTS = ["go to desk 1", "take mug 1 from desk 1", "look", "clean mug 1 with sinkbasin 1 and look again",
           "open drawer 3", "inventory"]


@pytest.fixture
def penalised_model_dir(tiny_model_dir, tmp_path) -> str:
    """The tiny model with a generation config that bends sampling (as real checkpoints ship them)."""
    model_dir = tmp_path / "penalised"
    shutil.copytree(tiny_model_dir, model_dir)
    path = model_dir / "generation_config.json"
    gen = json.loads(path.read_text())
    gen.update(repetition_penalty=1.5, no_repeat_ngram_size=2, top_k=3, min_new_tokens=4, do_sample=False)
    path.write_text(json.dumps(gen))
    return str(model_dir)


def make_engine(model_dir: str):
    tokenizer = load_tokenizer(model_dir)
    engine = HFRollout(load_causal_lm(model_dir, torch.float32), torch.device("cpu"), tokenizer.pad_token_id,
                       eos_token_ids(tokenizer, model_dir), response_length=12, micro_batch_size=len(PROMPTS))
    prompts, _ = PromptBuilder(tokenizer, 64, "error").build(PROMPTS)
    return engine, prompts


def as_samples(prompts: DataProto, out: DataProto) -> DataProto:
    """The training samples the trainer builds: prompt ids followed by exactly the sampled ids."""
    responses, mask = out.batch["responses"], out.batch["response_mask"]
    attention = torch.cat([prompts.batch["attention_mask"], mask], dim=1)
    return DataProto.from_dict({"input_ids": torch.cat([prompts.batch["input_ids"], responses], dim=1),
                                "attention_mask": attention, "position_ids": position_ids_from_mask(attention),
                                "responses": responses, "response_mask": mask})


def test_sampled_tokens_carry_the_actors_log_probs(penalised_model_dir):
    """The engine's log-probability of every sampled token (softmax(logits / T), what it samples from:
    the checkpoint's repetition penalty, n-gram ban and top_k are not applied) equals the actor's."""
    engine, prompts = make_engine(penalised_model_dir)
    prompts.meta_info.update(do_sample=True, temperature=TEMPERATURE, top_p=1.0, top_k=-1, seed=3,
                             return_log_probs=True)
    out = engine.generate(prompts)

    mask = out.batch["response_mask"]
    actor = DataParallelPPOActor(load_causal_lm(penalised_model_dir, torch.float32), None, torch.device("cpu"), 1)
    actor_logp, _ = actor.compute_log_prob(as_samples(prompts, out), micro_batch_size=4, temperature=TEMPERATURE)

    valid = mask.bool()
    assert valid.sum() >= 3 * len(PROMPTS)
    torch.testing.assert_close(out.batch["rollout_log_probs"][valid], actor_logp[valid], atol=1e-4, rtol=0)


def test_greedy_validation_picks_the_actors_argmax(penalised_model_dir):
    """val_kwargs.do_sample=False: every token is the argmax of the policy (no penalty, no n-gram ban)."""
    engine, prompts = make_engine(penalised_model_dir)
    prompts.meta_info.update(do_sample=False, temperature=0.0, top_p=1.0, top_k=-1, seed=0)
    samples = as_samples(prompts, engine.generate(prompts))
    actor = load_causal_lm(penalised_model_dir, torch.float32)
    with torch.no_grad():
        logits, slots = response_outputs(actor, samples.batch, torch.device("cpu"), False, causal_lm=True)
    assert len(slots.rows) >= 3 * len(PROMPTS)  # every real response token
    assert torch.equal(samples.batch["responses"][slots.rows, slots.cols], logits.argmax(-1))
