"""Compression bonus of the visual mode (AgentOCR's agent-chosen compression, SKILL0 §4).

Each step sample carries the factor c its response chose for the next history image
(``non_tensor_batch["compression_factor"]``, 1 when it chose none). On every
``compression_reward_every_n_steps``-th training step, every step sample of a successful episode gets
``+compression_reward_coef * ln(c)`` and, with ``compression_failure_penalty_coef > 0``, every step
sample of a failed episode gets ``-compression_failure_penalty_coef * ln(c)``. ln(1) = 0, so choosing no
compression is neutral; the trainer adds the bonus on the sample's last valid response token, next to the
episode reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from verl.protocol import DataProto


@dataclass(frozen=True)
class CompressionReward:
    coef: float
    failure_coef: float = 0.0
    every_n_steps: int = 1

    @classmethod
    def from_config(cls, ocr_cfg: Any) -> "CompressionReward":
        """From the ``ocr`` config section (``ocr.agent_select_compression.*``)."""
        c = ocr_cfg.agent_select_compression
        return cls(float(c.compression_reward_coef), float(c.compression_failure_penalty_coef),
                   int(c.compression_reward_every_n_steps))

    def applies(self, global_step: int) -> bool:
        return global_step % self.every_n_steps == 0

    def bonus(self, samples: DataProto, global_step: int) -> np.ndarray:
        """Per-sample bonus (B,) for training step ``global_step`` (zeros on the other steps)."""
        factors = samples.non_tensor_batch["compression_factor"].astype(np.float64)
        if not self.applies(global_step):
            return np.zeros_like(factors)
        log_c = np.log(factors)
        won = samples.non_tensor_batch["won"].astype(bool)
        return np.where(won, self.coef * log_c, -self.failure_coef * log_c)
