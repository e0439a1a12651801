"""Per-trajectory outcome metrics of one rollout: success overall and per metric tag, and how many
episodes stand behind each rate."""

from __future__ import annotations

import numpy as np

from agent_system.multi_turn_rollout.rollout_loop import RolloutResult


def success_by_tag(won: np.ndarray, tags: list[list[str]]) -> dict[str, float]:
    """``success_rate`` plus ``<tag>_success_rate`` for every tag seen (e.g. ALFWorld task types)."""
    out = {"success_rate": float(np.mean(won)) if len(won) else 0.0}
    for tag in sorted({t for ts in tags for t in ts}):
        rows = [i for i, ts in enumerate(tags) if tag in ts]
        out[f"{tag}_success_rate"] = float(np.mean(won[rows]))
    return out


def games_by_tag(tags: list[list[str]]) -> dict[str, float]:
    """``num_games`` plus ``<tag>_num_games``: the episodes behind ``success_rate`` and each ``<tag>_success_rate``."""
    out = {"num_games": float(len(tags))}
    for tag in sorted({t for ts in tags for t in ts}):
        out[f"{tag}_num_games"] = float(sum(tag in ts for ts in tags))
    return out


def evaluation_metrics(result: RolloutResult) -> dict[str, float]:
    """Success overall and per tag, the number of games behind each rate, and the env's counters."""
    return {**success_by_tag(result.won, result.metric_tags), **games_by_tag(result.metric_tags), **result.env_counts}


def success_by_category(result: RolloutResult) -> dict[str, float]:
    """Success rate per task category (the skill curriculum's keys)."""
    out = {}
    for cat in sorted(set(result.categories)):
        rows = [i for i, c in enumerate(result.categories) if c == cat]
        out[cat] = float(np.mean(result.won[rows]))
    return out


def rollout_metrics(result: RolloutResult) -> dict[str, float]:
    """Episode-level metrics of a rollout (success, reward, length, valid-action ratio, rollout stats)."""
    samples = result.samples
    out = {f"episode/{k}": v for k, v in success_by_tag(result.won, result.metric_tags).items()}
    out.update({
        "episode/reward/mean": float(result.episode_rewards.mean()),
        "episode/reward/max": float(result.episode_rewards.max()),
        "episode/reward/min": float(result.episode_rewards.min()),
        "episode/length/mean": float(result.episode_lengths.mean()),
        "episode/valid_action_ratio": float(np.mean(samples.non_tensor_batch["is_action_valid"].astype(float))),
    })
    out.update(result.stats)
    out.update(result.env_counts)
    return out
