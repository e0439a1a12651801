"""Rollout engines: ``hf`` (transformers ``generate``, CPU or GPU) and ``vllm`` (GPU)."""

from __future__ import annotations

import importlib.util

from verl.workers.rollout.base import RolloutEngine


def vllm_problem() -> str | None:
    """Why ``actor_rollout_ref.rollout.name=vllm`` cannot run here (None when it can)."""
    if importlib.util.find_spec("vllm") is None:
        return ("needs the vllm package, which is not installed; on a CUDA machine run "
                "`pip install -r requirements-gpu.txt`, or use actor_rollout_ref.rollout.name=hf")
    if importlib.util.find_spec("verl.workers.rollout.vllm_rollout") is None:
        return ("the vLLM engine is not part of this release yet (see the README); use "
                "actor_rollout_ref.rollout.name=hf, which runs on CPU and GPU")
    return None


__all__ = ["RolloutEngine", "vllm_problem"]
