"""Packed (use_remove_padding) and padded forwards give the log-probs / values of each sequence run alone."""

from __future__ import annotations

import pytest
import torch
from transformers import (LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM,
                          Qwen2ForTokenClassification)

from verl.utils.packing import packed_inputs, padded_inputs, response_outputs
from verl.utils.torch_functional import logprobs_from_logits

VOCAB, PROMPT, RESPONSE = 64, 7, 5
CPU = torch.device("cpu")
SIZES = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)


def model(kind: str, attn: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "llama":
        net = LlamaForCausalLM(LlamaConfig(**SIZES))
    elif kind == "qwen2":
        net = Qwen2ForCausalLM(Qwen2Config(**SIZES))
    else:
        net = Qwen2ForTokenClassification(Qwen2Config(**SIZES, num_labels=1))
    net.config._attn_implementation = attn
    return net.eval()


def batch(prompt_lens: list[int], response_lens: list[int]) -> dict[str, torch.Tensor]:
    """Left-padded prompts + right-padded responses (pad id 0, padding positions clamped to 0)."""
    g = torch.Generator().manual_seed(1)
    n = len(prompt_lens)
    prompt_mask = (torch.arange(PROMPT)[None] >= PROMPT - torch.tensor(prompt_lens)[:, None]).long()
    response_mask = (torch.arange(RESPONSE)[None] < torch.tensor(response_lens)[:, None]).long()
    attention = torch.cat([prompt_mask, response_mask], 1)
    ids = torch.randint(1, VOCAB, (n, PROMPT + RESPONSE), generator=g) * attention
    return {"input_ids": ids, "attention_mask": attention, "position_ids": (attention.cumsum(-1) - 1).clamp_min(0),
            "responses": ids[:, PROMPT:]}


def alone(net: torch.nn.Module, b: dict[str, torch.Tensor], row: int) -> torch.Tensor:
    """Outputs predicting row ``row``'s response tokens, the sequence run by itself without any padding."""
    keep = b["attention_mask"][row].bool()
    ids = b["input_ids"][row][keep][None]
    n_resp = int(b["attention_mask"][row, PROMPT:].sum())
    out = net(input_ids=ids, use_cache=False).logits[0, ids.shape[1] - n_resp - 1: ids.shape[1] - 1]
    if out.shape[-1] == 1:  # value head
        return out[:, 0]
    return logprobs_from_logits(out, ids[0, ids.shape[1] - n_resp:])


@pytest.mark.parametrize("kind", ["qwen2", "llama", "critic"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("remove_padding", [True, False])
@torch.no_grad()
def test_packed_and_padded_forwards_match_each_sequence_alone(kind, attn, remove_padding):
    net = model(kind, attn)
    b = batch(prompt_lens=[3, 7, 1, 5], response_lens=[2, 5, 1, 3])
    out, slots = response_outputs(net, b, CPU, remove_padding, causal_lm=kind != "critic")
    if kind == "critic":
        values = slots.scatter(out[:, 0])
    else:
        values = slots.scatter(logprobs_from_logits(out, b["responses"][slots.rows, slots.cols]))
    mask = b["attention_mask"][:, PROMPT:].bool()
    assert values.shape == (4, RESPONSE)
    assert torch.all(values[~mask] == 0)
    for row in range(4):
        torch.testing.assert_close(values[row][mask[row]], alone(net, b, row), atol=1e-5, rtol=1e-5)


def test_padded_inputs_drop_all_padding_columns_on_both_sides():
    b = batch(prompt_lens=[3, 2], response_lens=[2, 1])  # 4 leading and 3 trailing columns unused
    inputs, width = padded_inputs(b, CPU)
    assert width == 2
    assert inputs["input_ids"].shape == (2, 3 + 2)
    torch.testing.assert_close(inputs["input_ids"], b["input_ids"][:, 4:PROMPT + 2])


def test_packed_inputs_concatenate_real_tokens_with_restarting_positions():
    b = batch(prompt_lens=[2, 1], response_lens=[1, 2])
    inputs, predict_at, slots = packed_inputs(b, CPU)
    assert inputs["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2]]
    expected = torch.cat([b["input_ids"][0, PROMPT - 2: PROMPT + 1], b["input_ids"][1, PROMPT - 1: PROMPT + 2]])
    assert inputs["input_ids"][0].tolist() == expected.tolist()
    assert predict_at.tolist() == [1, 3, 4]  # the token before each response token
    assert slots.rows.tolist() == [0, 1, 1] and slots.cols.tolist() == [0, 0, 1]


def test_packing_rejects_a_sample_without_prompt():
    b = batch(prompt_lens=[0, 2], response_lens=[1, 1])
    with pytest.raises(ValueError, match="non-empty prompt"):
        packed_inputs(b, CPU)
