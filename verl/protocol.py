"""DataProto: the batch that travels between the driver, the Ray workers and the rollout loop.

A DataProto is three things that share a first dimension (the samples):
``batch`` (name -> torch.Tensor), ``non_tensor_batch`` (name -> numpy object/number array, e.g. uids,
anchor observations) and ``meta_info`` (a plain dict that applies to the whole batch, e.g. sampling
settings). It is a plain dataclass so Ray pickles it without custom hooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch


def _as_object_array(values: Sequence[Any]) -> np.ndarray:
    """A 1-D numpy array that keeps each python value as one element (strings, dicts, lists)."""
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


@dataclass
class DataProto:
    batch: dict[str, torch.Tensor] = field(default_factory=dict)
    non_tensor_batch: dict[str, np.ndarray] = field(default_factory=dict)
    meta_info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sizes = {k: v.shape[0] for k, v in self.batch.items()}
        sizes.update({k: len(v) for k, v in self.non_tensor_batch.items()})
        if len(set(sizes.values())) > 1:
            raise ValueError(f"DataProto fields disagree on the batch size: {sizes}")

    @classmethod
    def from_dict(
        cls,
        tensors: dict[str, torch.Tensor] | None = None,
        non_tensors: dict[str, Sequence[Any]] | None = None,
        meta_info: dict[str, Any] | None = None,
    ) -> "DataProto":
        non_tensor_batch = {
            k: v if isinstance(v, np.ndarray) else _as_object_array(v) for k, v in (non_tensors or {}).items()
        }
        return cls(dict(tensors or {}), non_tensor_batch, dict(meta_info or {}))

    def __len__(self) -> int:
        for v in self.batch.values():
            return v.shape[0]
        for v in self.non_tensor_batch.values():
            return len(v)
        return 0

    def select_idxs(self, idxs: np.ndarray | torch.Tensor | list[int] | slice) -> "DataProto":
        """Rows ``idxs`` (an index list, a boolean mask or a slice) as a new DataProto."""
        if isinstance(idxs, slice):
            np_idx: Any = idxs
            t_idx: Any = idxs
        else:
            np_idx = np.asarray(idxs.cpu() if isinstance(idxs, torch.Tensor) else idxs)
            if np_idx.dtype == bool:
                np_idx = np.nonzero(np_idx)[0]
            np_idx = np_idx.astype(np.int64)
            t_idx = torch.from_numpy(np_idx)
        return DataProto(
            {k: v[t_idx] for k, v in self.batch.items()},
            {k: v[np_idx] for k, v in self.non_tensor_batch.items()},
            dict(self.meta_info),
        )

    def __getitem__(self, item: slice) -> "DataProto":
        return self.select_idxs(item)

    @staticmethod
    def concat(parts: Sequence["DataProto"]) -> "DataProto":
        """Stack along the batch dimension; ``meta_info`` comes from the first part."""
        if not parts:
            raise ValueError("DataProto.concat needs at least one part")
        first = parts[0]
        return DataProto(
            {k: torch.cat([p.batch[k] for p in parts]) for k in first.batch},
            {k: np.concatenate([p.non_tensor_batch[k] for p in parts]) for k in first.non_tensor_batch},
            dict(first.meta_info),
        )

    def split(self, size: int) -> list["DataProto"]:
        """Consecutive chunks of ``size`` rows (the last may be shorter)."""
        if size <= 0:
            raise ValueError(f"split size must be positive, got {size}")
        return [self.select_idxs(slice(i, i + size)) for i in range(0, len(self), size)]

    def chunk(self, n: int) -> list["DataProto"]:
        """``n`` equal chunks; the batch size must be divisible by ``n`` (see :meth:`pad_to_divisor`)."""
        if len(self) % n:
            raise ValueError(f"cannot chunk {len(self)} rows into {n} equal parts; pad_to_divisor first")
        return self.split(len(self) // n) if len(self) else [self for _ in range(n)]

    def union(self, other: "DataProto") -> "DataProto":
        """Add the fields of ``other`` (same rows) to this batch, in place; returns self."""
        if len(other) != len(self) and len(self) and len(other):
            raise ValueError(f"union of batches with {len(self)} and {len(other)} rows")
        self.batch.update(other.batch)
        self.non_tensor_batch.update(other.non_tensor_batch)
        self.meta_info.update(other.meta_info)
        return self

    def pad_to_divisor(self, divisor: int) -> tuple["DataProto", int]:
        """Append copies of the first rows until ``len % divisor == 0``; returns (padded, pad_size).

        Padded rows are marked with ``non_tensor_batch['is_pad'] = True`` so losses can ignore them.
        """
        pad = (-len(self)) % divisor
        is_pad = np.zeros(len(self) + pad, dtype=bool)
        is_pad[len(self):] = True
        if pad == 0:
            out = DataProto(dict(self.batch), dict(self.non_tensor_batch), dict(self.meta_info))
        else:
            idx = np.concatenate([np.arange(len(self)), np.arange(pad) % max(len(self), 1)])
            out = self.select_idxs(idx)
        if "is_pad" in self.non_tensor_batch:
            is_pad[: len(self)] = self.non_tensor_batch["is_pad"].astype(bool)
        out.non_tensor_batch["is_pad"] = is_pad
        return out, pad

    def unpad(self, pad_size: int) -> "DataProto":
        out = self.select_idxs(slice(0, len(self) - pad_size)) if pad_size else self
        out.non_tensor_batch.pop("is_pad", None)
        return out
