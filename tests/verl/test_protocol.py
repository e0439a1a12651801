"""DataProto: batching operations the trainer and the worker groups rely on."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from verl.protocol import DataProto


def make(n: int) -> DataProto:
    return DataProto.from_dict({"x": torch.arange(n * 2).view(n, 2)}, {"uid": [f"u{i}" for i in range(n)]},
                               {"temperature": 1.0})


def test_fields_must_agree_on_the_batch_size():
    with pytest.raises(ValueError, match="disagree"):
        DataProto.from_dict({"x": torch.zeros(3, 1)}, {"uid": ["a", "b"]})


def test_select_split_concat_round_trip():
    d = make(7)
    parts = d.split(3)
    assert [len(p) for p in parts] == [3, 3, 1]
    back = DataProto.concat(parts)
    assert torch.equal(back.batch["x"], d.batch["x"]) and list(back.non_tensor_batch["uid"]) == list(d.non_tensor_batch["uid"])
    picked = d.select_idxs(np.array([True, False, True, False, False, False, True]))
    assert list(picked.non_tensor_batch["uid"]) == ["u0", "u2", "u6"]
    assert picked.meta_info == {"temperature": 1.0}


def test_pad_to_divisor_marks_padding_and_unpads():
    padded, pad = make(5).pad_to_divisor(4)
    assert pad == 3 and len(padded) == 8
    assert padded.non_tensor_batch["is_pad"].tolist() == [False] * 5 + [True] * 3
    chunks = padded.chunk(4)
    assert all(len(c) == 2 for c in chunks)
    assert len(DataProto.concat(chunks).unpad(pad)) == 5
    with pytest.raises(ValueError, match="pad_to_divisor"):
        make(5).chunk(4)


def test_union_and_pickle():
    d = make(3).union(DataProto.from_dict({"y": torch.ones(3)}))
    assert set(d.batch) == {"x", "y"}
    assert torch.equal(pickle.loads(pickle.dumps(d)).batch["y"], torch.ones(3))
