"""The compression bonus: coef x ln(c) on successful episodes, every n-th training step only."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agent_system.reward_manager.compression import CompressionReward
from tests.conftest import trainer_config
from verl.protocol import DataProto
from verl.utils.torch_functional import place_reward_on_last_token


def samples(factors, won) -> DataProto:
    return DataProto.from_dict({"response_mask": torch.tensor([[1, 1, 0]] * len(factors))},
                               {"compression_factor": np.array(factors), "won": np.array(won)})


def test_bonus_on_successful_episodes_every_nth_step():
    reward = CompressionReward(coef=0.01, failure_coef=0.0, every_n_steps=8)
    batch = samples([1.0, 2.0, 5.0, 3.0], [True, True, True, False])
    np.testing.assert_allclose(reward.bonus(batch, 8), [0.0, 0.01 * math.log(2), 0.01 * math.log(5), 0.0])
    np.testing.assert_allclose(reward.bonus(batch, 16), reward.bonus(batch, 8))
    for step in (1, 7, 9, 15):
        assert not reward.bonus(batch, step).any()
    scores = place_reward_on_last_token(reward.bonus(batch, 8), batch.batch["response_mask"])
    assert scores[1, 1] == pytest.approx(0.01 * math.log(2)) and scores[:, [0, 2]].abs().sum() == 0


def test_optional_failure_penalty():
    reward = CompressionReward(coef=0.01, failure_coef=0.1, every_n_steps=1)
    np.testing.assert_allclose(reward.bonus(samples([4.0, 4.0], [True, False]), 3),
                               [0.01 * math.log(4), -0.1 * math.log(4)])


def test_from_config_reads_the_ocr_section():
    cfg = trainer_config(["ocr.agent_select_compression.compression_reward_coef=0.01",
                          "ocr.agent_select_compression.compression_reward_every_n_steps=8"])
    assert CompressionReward.from_config(cfg.ocr) == CompressionReward(0.01, 0.0, 8)
