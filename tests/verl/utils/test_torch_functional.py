"""Hand-computed checks for verl.utils.torch_functional."""

import math

import pytest
import torch

from verl.utils import torch_functional as F

X = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])  # selects 1, 2, 4


def test_masked_sum_and_mean_by_hand():
    assert F.masked_sum(X, MASK).item() == 7.0
    assert F.masked_mean(X, MASK).item() == pytest.approx(7 / 3)
    assert F.masked_sum(X, MASK, dim=-1).tolist() == [3.0, 4.0]
    assert F.masked_mean(X, MASK, dim=-1).tolist() == [1.5, 4.0]


def test_masked_mean_of_empty_row_is_zero():
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    assert F.masked_mean(X, mask, dim=-1).tolist() == [1.5, 0.0]


def test_masked_positions_never_leak_even_inf_or_nan():
    dirty = X.clone()
    dirty[0, 2], dirty[1, 1] = float("inf"), float("nan")
    assert F.masked_sum(dirty, MASK).item() == 7.0
    assert F.masked_mean(dirty, MASK, dim=-1).tolist() == [1.5, 4.0]
    assert F.masked_var(dirty, MASK).item() == pytest.approx(7 / 3)


def test_shape_mismatch_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        F.masked_sum(X, MASK[:, :2])


def test_masked_var_by_hand():
    # selected 1, 2, 4: mean 7/3, squared deviations 16/9 + 1/9 + 25/9 = 42/9
    assert F.masked_var(X, MASK, unbiased=False).item() == pytest.approx(42 / 9 / 3)
    assert F.masked_var(X, MASK, unbiased=True).item() == pytest.approx(42 / 9 / 2)


def test_masked_var_needs_enough_values():
    single = torch.tensor([[1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="at least 2"):
        F.masked_var(X, single)
    assert F.masked_var(X, single, unbiased=False).item() == 0.0


def test_masked_whiten_by_hand():
    std = math.sqrt(7 / 3 + 1e-8)
    expected = torch.tensor([[(1 - 7 / 3) / std, (2 - 7 / 3) / std, 0.0], [(4 - 7 / 3) / std, 0.0, 0.0]])
    torch.testing.assert_close(F.masked_whiten(X, MASK), expected)
    kept_mean = expected + torch.tensor([[7 / 3, 7 / 3, 0.0], [7 / 3, 0.0, 0.0]])
    torch.testing.assert_close(F.masked_whiten(X, MASK, shift_mean=False), kept_mean)


def test_logprobs_and_entropy_by_hand():
    # softmax([0, ln 3]) = [1/4, 3/4]
    logits = torch.tensor([[[0.0, math.log(3.0)], [0.0, math.log(3.0)]]])
    labels = torch.tensor([[1, 0]])
    torch.testing.assert_close(F.logprobs_from_logits(logits, labels),
                               torch.tensor([[math.log(0.75), math.log(0.25)]]))
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    torch.testing.assert_close(F.entropy_from_logits(logits), torch.full((1, 2), entropy))


def test_chunked_logprobs_match_log_softmax_values_and_grads(monkeypatch):
    monkeypatch.setattr(F, "ROW_CHUNK", 2)  # 3 * 3 = 9 rows -> 5 chunks, the last one short
    torch.manual_seed(0)
    logits = torch.randn(3, 3, 7, requires_grad=True)
    labels = torch.randint(0, 7, (3, 3))
    ours = F.logprobs_from_logits(logits, labels)
    (grad_ours,) = torch.autograd.grad(ours.sum(), logits)
    reference = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    (grad_ref,) = torch.autograd.grad(reference.sum(), logits)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(grad_ours, grad_ref)
    probs = torch.softmax(logits, -1)
    torch.testing.assert_close(F.entropy_from_logits(logits), -(probs * probs.log()).sum(-1))


def test_logprobs_of_bf16_logits_come_back_float32():
    logits = torch.zeros(2, 3, 4, dtype=torch.bfloat16)
    logp = F.logprobs_from_logits(logits, torch.zeros(2, 3, dtype=torch.long))
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, torch.full((2, 3), math.log(0.25)))


def test_logprobs_reject_mismatched_labels():
    with pytest.raises(ValueError, match="labels"):
        F.logprobs_from_logits(torch.zeros(2, 3, 4), torch.zeros(2, 2, dtype=torch.long))


def test_response_mask_from_ids():
    ids = torch.tensor([
        [5, 6, 2, 7, 2],  # EOS at 2: kept, later tokens dropped
        [5, 0, 0, 0, 0],  # stopped without EOS, right-padded
        [5, 6, 7, 8, 9],  # hit the length limit
        [2, 0, 0, 0, 0],  # EOS first
    ])
    expected = [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]
    assert F.response_mask_from_ids(ids, eos_token_ids=[2], pad_token_id=0).tolist() == expected


def test_response_mask_when_pad_is_also_eos():
    ids = torch.tensor([[5, 0, 0], [5, 3, 7]])
    mask = F.response_mask_from_ids(ids, eos_token_ids=[2, 0], pad_token_id=0)
    assert mask.tolist() == [[1, 1, 0], [1, 1, 1]]


def test_response_mask_needs_an_eos_id():
    with pytest.raises(ValueError, match="eos_token_ids"):
        F.response_mask_from_ids(torch.tensor([[1]]), eos_token_ids=[], pad_token_id=0)


def test_pad_2d_list_to_length():
    assert F.pad_2d_list_to_length([[1, 2], [3]], pad=0).tolist() == [[1, 2], [3, 0]]
    assert F.pad_2d_list_to_length([[1, 2], [3]], pad=0, left_pad=True).tolist() == [[1, 2], [0, 3]]
    padded = F.pad_2d_list_to_length([[1, 2], []], pad=9, length=4)
    assert padded.dtype == torch.long and padded.tolist() == [[1, 2, 9, 9], [9, 9, 9, 9]]
    with pytest.raises(ValueError, match="length=1"):
        F.pad_2d_list_to_length([[1, 2]], pad=0, length=1)


def test_trim_left_padding_drops_only_all_padding_columns():
    batch = {"input_ids": torch.tensor([[0, 0, 5, 6], [0, 7, 8, 9]]),
             "attention_mask": torch.tensor([[0, 0, 1, 1], [0, 1, 1, 1]])}
    out = F.trim_left_padding(batch, torch.device("cpu"), keys=("input_ids", "attention_mask"))
    assert out["input_ids"].tolist() == [[0, 5, 6], [7, 8, 9]]
    assert out["attention_mask"].tolist() == [[0, 1, 1], [1, 1, 1]]


def test_place_reward_on_last_token_handles_holes_and_rejects_empty_rows():
    scores = F.place_reward_on_last_token([1.0, 2.0], torch.tensor([[1, 0, 1, 0], [1, 1, 1, 1]]))
    assert scores.tolist() == [[0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0]]
    with pytest.raises(ValueError, match=r"samples \[1\] have an empty response mask"):
        F.place_reward_on_last_token([1.0, 2.0], torch.tensor([[1, 0], [0, 0]]))
    with pytest.raises(ValueError, match="one reward per sample"):
        F.place_reward_on_last_token([1.0], torch.tensor([[1, 0], [1, 0]]))
