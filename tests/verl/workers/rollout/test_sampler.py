"""The HF engine's decoding loop: samples as ``generate`` does while dropping finished rows."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

from verl.utils.model import load_causal_lm, load_tokenizer
from verl.workers.rollout.sampler import Sampling, sample

PROMPTS = ["go to desk 1", "take mug 1 from desk 1 and then look around the room", "look",
           "clean mug 1 with sinkbasin 1", "open drawer 3", "inventory"]
# A third of the vocabulary ends a row, so rows of one batch end at different steps (the dropping is exercised).
EOS = list(range(0, 1024, 3))


@pytest.fixture(scope="module")
def model_and_prompts(tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.padding_side = "left"
    model = load_causal_lm(tiny_model_dir, torch.float32).eval()
    model.generation_config = GenerationConfig()
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    return model, inputs["input_ids"], inputs["attention_mask"], tokenizer.pad_token_id


def test_greedy_rows_equal_generates_while_rows_end_at_different_steps(model_and_prompts):
    model, ids, mask, pad = model_and_prompts
    rows, _ = sample(model, ids, mask, 16, EOS, Sampling(greedy=True))
    with torch.no_grad():
        reference = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=16, do_sample=False,
                                   eos_token_id=EOS, pad_token_id=pad)[:, ids.shape[1]:]
    lengths = [len(row) for row in rows]
    assert min(lengths) < max(lengths)  # some rows left the batch while others went on
    for row, ref in zip(rows, reference):
        assert torch.equal(row, ref[: len(row)])
        if len(row) < 16:  # ended at its first EOS: generate only pads after it
            assert row[-1].item() in EOS and not torch.isin(row[:-1], torch.tensor(EOS)).any()
            assert (ref[len(row):] == pad).all()


def test_each_rows_log_probs_equal_a_forward_of_that_row_alone(model_and_prompts):
    model, ids, mask, _ = model_and_prompts
    torch.manual_seed(0)
    rows, log_probs = sample(model, ids, mask, 12, EOS, Sampling(temperature=0.7), with_log_probs=True)
    assert len({len(row) for row in rows}) >= 3
    for prompt, prompt_mask, row, logp in zip(ids, mask, rows, log_probs):
        full = torch.cat([prompt[prompt_mask.bool()], row])[None]  # unpadded, batch of one
        with torch.no_grad():
            logits = model(input_ids=full).logits[0, -len(row) - 1: -1].float()
        alone = torch.log_softmax(logits / 0.7, -1).gather(-1, row[:, None]).squeeze(1)
        torch.testing.assert_close(logp, alone, atol=1e-5, rtol=0)


def test_sampled_first_tokens_follow_the_warped_softmax(model_and_prompts):
    """4,000 draws of the first token: top-k keeps exactly the k likeliest tokens, and their frequencies
    follow softmax(logits / T) renormalised over them; top-p keeps the smallest nucleus holding p."""
    model, ids, mask, _ = model_and_prompts
    prompt, prompt_mask = ids[:1].expand(4000, -1), mask[:1].expand(4000, -1)
    with torch.no_grad():
        logits = model(input_ids=ids[:1], attention_mask=mask[:1]).logits[0, -1].float()
    probs = torch.softmax(logits / 0.5, -1)
    torch.manual_seed(1)
    rows, _ = sample(model, prompt, prompt_mask, 1, [], Sampling(temperature=0.5, top_k=4))
    drawn = torch.bincount(torch.cat(rows), minlength=probs.numel()).float() / 4000
    top4 = probs.topk(4).indices
    assert set(drawn.nonzero().squeeze(1).tolist()) == set(top4.tolist())
    expected = probs[top4] / probs[top4].sum()
    assert (drawn[top4] - expected).abs().sum() / 2 < 0.03  # total variation; sampling noise is ~0.01

    torch.manual_seed(2)
    rows, _ = sample(model, prompt, prompt_mask, 1, [], Sampling(temperature=0.5, top_p=0.6))
    ordered = probs.sort(descending=True)
    nucleus = ordered.indices[: int((ordered.values.cumsum(0) < 0.6).sum()) + 1]
    assert set(torch.cat(rows).unique().tolist()) <= set(nucleus.tolist())


def test_a_row_that_never_ends_stops_at_max_new_tokens(model_and_prompts):
    model, ids, mask, _ = model_and_prompts
    rows, log_probs = sample(model, ids, mask, 5, [], Sampling(), with_log_probs=True)
    assert [len(row) for row in rows] == [5] * len(PROMPTS)
    assert all((logp <= 0).all() and len(logp) == 5 for logp in log_probs)
