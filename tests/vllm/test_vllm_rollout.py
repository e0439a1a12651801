"""The vLLM engine against the hf engine and the actor, on the same weights (CPU build of vLLM)."""

from __future__ import annotations

import pytest

pytest.importorskip("vllm", reason="the vLLM suite runs in .venv-vllm: bash scripts/run_tests.sh --vllm")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from tests.vllm.conftest import RESPONSE_LENGTH, chat_prompts, hf_weights, make_engine  # noqa: E402
from agent_system.multi_turn_rollout.rollout_loop import position_ids_from_mask  # noqa: E402
from verl.protocol import DataProto  # noqa: E402
from verl.utils.model import eos_token_ids, load_causal_lm, load_tokenizer  # noqa: E402
from verl.workers.actor import DataParallelPPOActor  # noqa: E402
from verl.workers.rollout.hf_rollout import HFRollout  # noqa: E402
from verl.workers.rollout.vllm_rollout import WeightSyncError, request_seed  # noqa: E402

BIASED_TOKEN = 77


def hf_generate(model_dir: str, prompts: DataProto, weights: dict[str, torch.Tensor] | None = None) -> DataProto:
    tokenizer = load_tokenizer(model_dir)
    engine = HFRollout(load_causal_lm(model_dir, torch.float32), torch.device("cpu"), tokenizer.pad_token_id,
                       eos_token_ids(tokenizer, model_dir), RESPONSE_LENGTH, micro_batch_size=8)
    if weights is not None:
        engine.load_weights(weights.items())
    return engine.generate(prompts)


def assert_same_responses(a: DataProto, b: DataProto) -> None:
    assert torch.equal(a.batch["responses"], b.batch["responses"]), (a.batch["responses"], b.batch["responses"])
    assert torch.equal(a.batch["response_mask"], b.batch["response_mask"])


@pytest.mark.parametrize("model", ["tiny", "smollm"])
def test_greedy_output_equals_hf_greedy_on_the_same_weights(model, request):
    model_dir = request.getfixturevalue("tiny_model_dir" if model == "tiny" else "smollm_dir")
    engine = request.getfixturevalue(f"{model}_engine")
    prompts = chat_prompts(model_dir)
    out = engine.generate(prompts)
    assert out.batch["responses"].shape == (len(prompts), RESPONSE_LENGTH)
    assert_same_responses(out, hf_generate(model_dir, prompts))


def biased_weights(weights: dict[str, torch.Tensor], token: int) -> dict[str, torch.Tensor]:
    """Make ``token`` the greedy choice everywhere: one embedding column holds a large constant for every
    token (so the residual stream carries it and the final norm keeps it positive) and twice that for
    ``token``, whose tied output logit then dominates. Embedding and LM head stay one tensor."""
    emb = weights["model.embed_tokens.weight"].clone()
    emb[:, 3] = 100.0
    emb[token, 3] = 200.0
    return {**weights, "model.embed_tokens.weight": emb, "lm_head.weight": emb}


def test_a_sync_that_biases_one_token_changes_greedy_output(tiny_engine, tiny_model_dir):
    original = hf_weights(tiny_model_dir)
    prompts = chat_prompts(tiny_model_dir)
    before = tiny_engine.generate(prompts).batch["responses"]
    assert (before != BIASED_TOKEN).any()
    tiny_engine.load_weights(biased_weights(original, BIASED_TOKEN).items())
    try:
        assert (tiny_engine.generate(prompts).batch["responses"] == BIASED_TOKEN).all()
    finally:
        tiny_engine.load_weights(original.items())
    assert torch.equal(tiny_engine.generate(prompts).batch["responses"], before)


def actor_log_probs(model: torch.nn.Module, prompts: DataProto, out: DataProto, temperature: float) -> torch.Tensor:
    """The actor's recomputation of the sampled tokens' log-probs (as in the trainer's old_log_prob phase)."""
    attention = torch.cat([prompts.batch["attention_mask"], out.batch["response_mask"]], 1)
    batch = DataProto.from_dict({
        "input_ids": torch.cat([prompts.batch["input_ids"], out.batch["responses"]], 1), "attention_mask": attention,
        "position_ids": position_ids_from_mask(attention), "responses": out.batch["responses"]})
    actor = DataParallelPPOActor(model, None, torch.device("cpu"), world_size=1)
    return actor.compute_log_prob(batch, micro_batch_size=4, temperature=temperature)[0] * out.batch["response_mask"]


def test_synced_perturbed_weights_reach_every_layer(tiny_engine, tiny_model_dir):
    """Noise on every tensor (linear layers included, which the CPU backend repacks): after the sync the
    engine's sampled-token log-probs are those of the perturbed model, not of the original one."""
    original = hf_weights(tiny_model_dir)
    g = torch.Generator().manual_seed(0)
    perturbed = {k: v + 0.5 * v.std() * torch.randn(v.shape, generator=g) for k, v in original.items()
                 if k != "lm_head.weight"}
    perturbed["lm_head.weight"] = perturbed["model.embed_tokens.weight"]  # tied, as the actor streams it
    prompts = chat_prompts(tiny_model_dir, do_sample=True, temperature=1.0, top_p=1.0, top_k=-1, seed=1)
    tiny_engine.load_weights(perturbed.items())
    try:
        out = tiny_engine.generate(prompts)
    finally:
        tiny_engine.load_weights(original.items())
    model = load_causal_lm(tiny_model_dir, torch.float32)
    assert (actor_log_probs(model, prompts, out, 1.0) - out.batch["rollout_log_probs"]).abs().max() > 0.1
    model.load_state_dict(perturbed)
    assert (actor_log_probs(model, prompts, out, 1.0) - out.batch["rollout_log_probs"]).abs().max() < 1e-3


def test_a_sync_that_does_not_take_effect_fails_loudly(tiny_engine, tiny_model_dir):
    """The embedding is tied to the LM head: streaming a different LM head after it overwrites the
    embedding just loaded, so the engine does not hold what was sent under that name. The probe sees it."""
    original = hf_weights(tiny_model_dir)
    conflicting = {**biased_weights(original, BIASED_TOKEN), "lm_head.weight": original["lm_head.weight"]}
    try:
        with pytest.raises(WeightSyncError, match="did not take effect.*model.embed_tokens.weight"):
            tiny_engine.load_weights(conflicting.items())
    finally:
        tiny_engine.load_weights(original.items())


def test_log_probs_of_sampled_tokens_match_the_actors_recomputation(smollm_engine, smollm_dir):
    temperature = 0.8
    prompts = chat_prompts(smollm_dir, do_sample=True, temperature=temperature, top_p=1.0, top_k=-1, seed=3)
    out = smollm_engine.generate(prompts)
    assert out.batch["response_mask"].sum() > len(prompts)
    logp = actor_log_probs(load_causal_lm(smollm_dir, torch.float32), prompts, out, temperature)
    assert (logp - out.batch["rollout_log_probs"]).abs().max() < 2e-3


def test_sampling_is_seeded_per_request(smollm_engine, smollm_dir):
    def sample(seed: int, messages=None) -> torch.Tensor:
        kwargs = {} if messages is None else {"messages": messages}
        prompts = chat_prompts(smollm_dir, do_sample=True, temperature=1.0, top_p=1.0, top_k=-1, seed=seed, **kwargs)
        return smollm_engine.generate(prompts).batch["responses"]

    first = sample(7)
    assert torch.equal(sample(7), first)  # same seed, same samples (what resume relies on)
    assert not torch.equal(sample(8), first)
    # a request's sample depends on its own seed, not on the other requests in the batch
    assert torch.equal(sample(7, messages=["Say one word."] * 4)[3], first[3])
    assert request_seed(7, 0, 3) != request_seed(7, 1, 3)  # ranks draw different streams


def test_response_cap_and_eos_layout(smollm_engine, smollm_dir):
    """Right-padded to the response length; the mask covers tokens up to and including the first EOS."""
    tokenizer = load_tokenizer(smollm_dir)
    eos = eos_token_ids(tokenizer, smollm_dir)
    out = smollm_engine.generate(chat_prompts(smollm_dir, messages=["Reply with exactly: ok"] * 2 + ["Count to fifty."]))
    for row, mask in zip(out.batch["responses"], out.batch["response_mask"]):
        n = int(mask.sum())
        assert mask[:n].all() and not mask[n:].any()
        assert (row[n:] == tokenizer.pad_token_id).all()
        assert n == RESPONSE_LENGTH or int(row[n - 1]) in eos


def test_prompts_with_images_are_refused_not_sampled_without_them(tiny_engine, tiny_model_dir):
    prompts = chat_prompts(tiny_model_dir)
    prompts.non_tensor_batch["images"] = np.array([np.zeros((28, 28, 3), np.uint8)] * len(prompts), dtype=object)
    with pytest.raises(ValueError, match="does not take history images.*rollout.name=hf"):
        tiny_engine.generate(prompts)


def test_tensor_parallel_above_one_is_a_clear_error(tiny_model_dir):
    with pytest.raises(ValueError, match="tensor_model_parallel_size=2.*set it to 1"):
        make_engine(tiny_model_dir, tensor_model_parallel_size=2)
