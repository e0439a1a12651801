"""Training-batch metrics (scores, advantages, lengths), timing and throughput."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

from verl.protocol import DataProto


@contextmanager
def timer(name: str, timings: dict[str, float]) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _stats(prefix: str, values: torch.Tensor) -> dict[str, float]:
    values = values.float()
    if values.numel() == 0:
        return {}
    return {f"{prefix}/mean": float(values.mean()), f"{prefix}/max": float(values.max()),
            f"{prefix}/min": float(values.min())}


def data_metrics(batch: DataProto, max_response_length: int) -> dict[str, float]:
    b = batch.batch
    mask = b["response_mask"].bool()
    response_len = mask.sum(-1)
    prompt_len = b["attention_mask"][:, : b["prompts"].shape[1]].sum(-1)
    valid_adv = b["advantages"][mask]
    out = {
        **_stats("critic/score", b["token_level_scores"].sum(-1)),
        **_stats("critic/rewards", b["token_level_rewards"].sum(-1)),
        **_stats("critic/advantages", valid_adv),
        **_stats("critic/returns", b["returns"][mask]),
        **_stats("response_length", response_len),
        "response_length/clip_ratio": float((response_len >= max_response_length).float().mean()),
        **_stats("prompt_length", prompt_len),
    }
    if "values" in b:
        out.update(_stats("critic/values", b["values"][mask]))
    return out


def throughput_metrics(batch: DataProto, timings: dict[str, float], world_size: int) -> dict[str, float]:
    tokens = float(batch.batch["attention_mask"].sum())
    step_time = timings.get("step", 0.0) or 1e-9
    return {"perf/total_num_tokens": tokens, "perf/time_per_step": step_time,
            "perf/throughput": tokens / step_time / world_size}
