"""Episode rewards for step samples (verl-agent's EpisodeRewardManager).

Every (trajectory, step) sample is credited with its trajectory's episode reward (the sum of the env
rewards over the episode), placed on the sample's last valid response token.
"""

from __future__ import annotations

import torch

from verl.protocol import DataProto
from verl.utils.torch_functional import place_reward_on_last_token


class EpisodeRewardManager:
    def __call__(self, samples: DataProto) -> torch.Tensor:
        """token_level_scores (B, T)."""
        episode_reward = torch.as_tensor(samples.non_tensor_batch["episode_reward"].astype("float32"))
        return place_reward_on_last_token(episode_reward, samples.batch["response_mask"])
