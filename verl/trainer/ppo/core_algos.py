"""Advantage estimators, policy / value / entropy losses and KL terms for PPO-family training.

Every function is pure: torch tensors and numpy arrays in, tensors (or floats) out; no configs, no
distribution. Shape suffixes: ``B`` samples, ``T`` response tokens. In multi-turn agent RL (verl-agent)
each (trajectory, step) is one sample with

- ``index``: the group id (``uid``) shared by all trajectories of one task,
- ``traj_index``: the trajectory id (``traj_uid``),
- the episode reward on its last valid response token, so ``token_level_rewards_BT`` summed over the
  response is the episode reward of the sample's trajectory.

Advantage estimators return ``(advantages_BT, returns_BT)``, both 0 outside ``response_mask_BT``.
"""

from __future__ import annotations

import difflib
from typing import Callable, Sequence

import numpy as np
import torch

from verl.utils.torch_functional import masked_mean, masked_sum, masked_whiten, place_reward_on_last_token

# ---------------------------------------------------------------------------------------------------------
# Group bookkeeping
# ---------------------------------------------------------------------------------------------------------


def _as_ids(ids: Sequence | np.ndarray, batch_size: int, name: str) -> np.ndarray:
    """``ids`` as a 1-D numpy array of length ``batch_size`` (clear error otherwise)."""
    arr = np.asarray(ids, dtype=object)
    if arr.shape != (batch_size,):
        raise ValueError(f"{name} has shape {arr.shape} but the batch has {batch_size} samples; "
                         f"pass one {name} entry per sample")
    return arr


def _episode_scores(token_level_rewards_BT: torch.Tensor, response_mask_BT: torch.Tensor) -> torch.Tensor:
    """Each sample's total reward over its valid response tokens, float32 of shape (B,)."""
    if token_level_rewards_BT.shape != response_mask_BT.shape:
        raise ValueError(f"token_level_rewards {tuple(token_level_rewards_BT.shape)} and response_mask "
                         f"{tuple(response_mask_BT.shape)} must have the same (B, T) shape")
    return masked_sum(token_level_rewards_BT.float(), response_mask_BT, dim=-1)


def _group_rows(group_B: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct group id, every list in increasing row order."""
    _, codes_B, counts = np.unique(group_B, return_inverse=True, return_counts=True)
    return np.split(np.argsort(codes_B, kind="stable"), np.cumsum(counts)[:-1])


def _group_normalise(values_B: torch.Tensor, group_B: np.ndarray, contributes_B: np.ndarray,
                     epsilon: float, divide_by_std: bool, lone_gets_zero: bool = False) -> torch.Tensor:
    """(v - mean_g) / (std_g + epsilon), or v - mean_g without ``divide_by_std``, per group g.

    The group statistics use only the samples flagged in ``contributes_B`` (torch.std: unbiased) and are
    applied to every sample of the group. A group with a single contributor uses mean 0 and std 1, as
    verl, or advantage 0 with ``lone_gets_zero`` (verl-agent's step level: the lone value is its own mean).
    Statistics run in float64: in float32 the mean of identical rewards can miss them by one rounding
    step, and dividing that residue by (0 + epsilon) would turn "no signal" into a sizeable advantage.
    """
    out_B = torch.empty_like(values_B)
    values64_B = values_B.double()
    for rows in _group_rows(group_B):
        stats_from = values64_B[rows[contributes_B[rows]]]
        if stats_from.numel() > 1:
            mean, std = stats_from.mean(), stats_from.std()
        elif lone_gets_zero:
            out_B[rows] = 0.0
            continue
        else:
            mean, std = values64_B.new_tensor(0.0), values64_B.new_tensor(1.0)
        centred = values64_B[rows] - mean
        out_B[rows] = (centred / (std + epsilon) if divide_by_std else centred).to(out_B.dtype)
    return out_B


def _first_of_each_trajectory(index: np.ndarray, traj_index: np.ndarray) -> np.ndarray:
    """Boolean mask selecting one sample per (uid, traj_uid) pair: its first occurrence in the batch."""
    seen: set[tuple] = set()
    first_B = np.zeros(len(index), dtype=bool)
    for i, key in enumerate(zip(index, traj_index)):
        if key not in seen:
            seen.add(key)
            first_B[i] = True
    return first_B


def _broadcast(adv_B: torch.Tensor, response_mask_BT: torch.Tensor) -> torch.Tensor:
    """Copy a per-sample value onto every valid response token (0 elsewhere)."""
    return adv_B.unsqueeze(-1) * response_mask_BT.to(adv_B.dtype)


# ---------------------------------------------------------------------------------------------------------
# Advantage estimators
# ---------------------------------------------------------------------------------------------------------


def compute_grpo_outcome_advantage(token_level_rewards_BT: torch.Tensor, response_mask_BT: torch.Tensor,
                                   index: np.ndarray, traj_index: np.ndarray, epsilon: float = 1e-6,
                                   norm_adv_by_std_in_grpo: bool = True,
                                   compute_mean_std_cross_steps: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """GRPO outcome advantage (Shao et al. 2024, DeepSeekMath §4.1.2): A_i = (R_i - mean_g) / (std_g + eps).

    R_i is the sample's summed reward; g its ``index`` group. With ``compute_mean_std_cross_steps`` the
    statistics run over every step sample of the group (verl-agent default), otherwise over one score per
    trajectory. ``norm_adv_by_std_in_grpo=False`` gives Dr.GRPO (Liu et al. 2025), A_i = R_i - mean_g.
    """
    scores_B = _episode_scores(token_level_rewards_BT, response_mask_BT)
    index = _as_ids(index, len(scores_B), "index")
    traj_index = _as_ids(traj_index, len(scores_B), "traj_index")
    contributes_B = (np.ones(len(index), dtype=bool) if compute_mean_std_cross_steps
                     else _first_of_each_trajectory(index, traj_index))
    adv_B = _group_normalise(scores_B, index, contributes_B, epsilon, norm_adv_by_std_in_grpo)
    adv_BT = _broadcast(adv_B, response_mask_BT)
    return adv_BT, adv_BT


def compute_step_discounted_returns(step_rewards_B: torch.Tensor | np.ndarray, traj_index: np.ndarray,
                                    step_ids_B: torch.Tensor | np.ndarray, gamma: float,
                                    step_penalty_B: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Per-trajectory discounted return G_t = r_t + gamma * G_{t+1}, walking steps in ``step_ids_B`` order.

    Used for GiGPO's step-level groups (Feng et al. 2025, Eq. 5). ``step_penalty_B`` (the invalid-action
    penalty of each sample, see :func:`invalid_action_penalty`) is then subtracted from that sample's own
    return, G_t - p_t, and is not discounted into earlier steps: verl-agent computes the returns first and
    its ``apply_invalid_action_penalty`` lowers each step's ``step_rewards`` entry. Returns float32 (B,).
    """
    rewards_B = torch.as_tensor(step_rewards_B, dtype=torch.float32)
    traj_index = _as_ids(traj_index, len(rewards_B), "traj_index")
    step_ids = np.asarray(step_ids_B)
    if step_ids.shape != (len(rewards_B),):
        raise ValueError(f"step_ids has shape {step_ids.shape}; pass one step index per sample")
    returns_B = torch.zeros_like(rewards_B)
    for rows in _group_rows(traj_index):
        if len(np.unique(step_ids[rows])) != len(rows):
            raise ValueError(f"trajectory {traj_index[rows[0]]!r} has repeated step ids "
                             f"{sorted(step_ids[rows].tolist())}; each (traj_uid, step) must be one sample")
        running = 0.0
        for row in rows[np.argsort(step_ids[rows])][::-1]:
            running = float(rewards_B[row]) + gamma * running
            returns_B[row] = running
    if step_penalty_B is None:
        return returns_B
    penalty_B = torch.as_tensor(step_penalty_B, dtype=torch.float32)
    if penalty_B.shape != rewards_B.shape:
        raise ValueError(f"step_penalty has shape {tuple(penalty_B.shape)}; pass one penalty per sample")
    return returns_B - penalty_B


def _similar(a: str, b: str, thresh: float) -> bool:
    """difflib SequenceMatcher ratio (2 * matches / total length) of ``a`` and ``b`` reaches ``thresh``."""
    return difflib.SequenceMatcher(None, a, b).ratio() >= thresh


def _anchor_groups(anchor_obs: np.ndarray, index: np.ndarray, enable_similarity: bool,
                   similarity_thresh: float) -> np.ndarray:
    """Step-group id per sample: same uid and same anchor observation.

    With ``enable_similarity`` the distinct observations of a uid group are clustered greedily in order of
    first appearance: each joins the first cluster whose representative (its first observation) has a
    difflib SequenceMatcher ratio >= ``similarity_thresh``, else it opens a new cluster.
    """
    group_B = np.empty(len(index), dtype=np.int64)
    next_group = 0
    for rows in _group_rows(index):
        cluster_of: dict[str, int] = {}
        representatives: list[str] = []
        for row in rows:
            obs = anchor_obs[row]
            if not isinstance(obs, str):
                raise TypeError(f"anchor_obs[{row}] is {type(obs).__name__}; GiGPO needs the raw observation string")
            if obs not in cluster_of:
                match = (next((k for k, rep in enumerate(representatives) if _similar(obs, rep, similarity_thresh)),
                              None) if enable_similarity else None)
                if match is None:
                    representatives.append(obs)
                    match = len(representatives) - 1
                cluster_of[obs] = match
            group_B[row] = next_group + cluster_of[obs]
        next_group += len(representatives)
    return group_B


GIGPO_MODES = ("mean_norm", "mean_std_norm")


def compute_gigpo_outcome_advantage(token_level_rewards_BT: torch.Tensor, step_rewards_B: torch.Tensor,
                                    response_mask_BT: torch.Tensor, anchor_obs: np.ndarray, index: np.ndarray,
                                    traj_index: np.ndarray, epsilon: float = 1e-6, step_advantage_w: float = 1.0,
                                    mode: str = "mean_norm", enable_similarity: bool = False,
                                    similarity_thresh: float = 0.95,
                                    compute_mean_std_cross_steps: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """GiGPO (Feng et al. 2025, "Group-in-Group Policy Optimization for LLM Agent Training", Eq. 3-8),
    with the defaults of its reference implementation (verl-agent ``core_gigpo``).

    A = A^E + w * A^S.

    - Episode level A^E (Eq. 3): each sample's score (its summed token rewards: the episode reward minus
      its own invalid-action penalty) normalised in its uid group. With ``compute_mean_std_cross_steps``
      (default, as the reference) the group statistics run over every step sample of the group, so longer
      trajectories weigh more; ``False`` uses one score per trajectory (the paper's formula). A group with
      a single contributor uses mean 0 and std 1.
    - Step level A^S (Eq. 6-7): samples of one uid group whose anchor observation (the raw env state) is
      identical (or similar, see ``enable_similarity``) form a step group, and their discounted step
      returns ``step_rewards_B`` (see :func:`compute_step_discounted_returns`) are normalised inside it.
      A step group of one sample has nothing to compare with and gets A^S = 0.

    ``mode="mean_norm"`` only subtracts the group mean; ``"mean_std_norm"`` also divides by (std + eps).
    Group statistics run in float64 (a group of equal values gets exactly 0).
    """
    if mode not in GIGPO_MODES:
        raise ValueError(f"unknown GiGPO mode {mode!r}; valid modes: {', '.join(GIGPO_MODES)}")
    divide_by_std = mode == "mean_std_norm"
    scores_B = _episode_scores(token_level_rewards_BT, response_mask_BT)
    batch = len(scores_B)
    index = _as_ids(index, batch, "index")
    traj_index = _as_ids(traj_index, batch, "traj_index")
    anchor_obs = _as_ids(anchor_obs, batch, "anchor_obs")
    step_returns_B = torch.as_tensor(step_rewards_B, dtype=torch.float32)
    if step_returns_B.shape != (batch,):
        raise ValueError(f"step_rewards_B has shape {tuple(step_returns_B.shape)}; pass one return per sample")

    every_sample = np.ones(batch, dtype=bool)
    episode_contributes = every_sample if compute_mean_std_cross_steps else _first_of_each_trajectory(index, traj_index)
    episode_adv_B = _group_normalise(scores_B, index, episode_contributes, epsilon, divide_by_std)
    step_groups = _anchor_groups(anchor_obs, index, enable_similarity, similarity_thresh)
    step_adv_B = _group_normalise(step_returns_B, step_groups, every_sample, epsilon, divide_by_std,
                                  lone_gets_zero=True)
    adv_BT = _broadcast(episode_adv_B + step_advantage_w * step_adv_B, response_mask_BT)
    return adv_BT, adv_BT


def compute_gae_advantage_return(token_level_rewards_BT: torch.Tensor, values_BT: torch.Tensor,
                                 response_mask_BT: torch.Tensor, gamma: float,
                                 lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE (Schulman et al. 2016, Eq. 16): A_t = sum_l (gamma*lam)^l delta_{t+l},
    delta_t = r_t + gamma V_{t+1} - V_t, over each sample's valid tokens (masked tokens are skipped and the
    value after the last valid token is 0). Returns R_t = A_t + V_t; advantages are then whitened over the
    valid tokens of the batch.
    """
    mask = response_mask_BT.bool()
    rewards_BT = torch.where(mask, token_level_rewards_BT.float(), 0.0)
    values_BT = torch.where(mask, values_BT.float(), 0.0)
    next_value_B = torch.zeros_like(values_BT[:, 0])
    running_adv_B = torch.zeros_like(values_BT[:, 0])
    adv_BT = torch.zeros_like(values_BT)
    for t in reversed(range(values_BT.shape[1])):
        delta_B = rewards_BT[:, t] + gamma * next_value_B - values_BT[:, t]
        valid_B = mask[:, t]
        running_adv_B = torch.where(valid_B, delta_B + gamma * lam * running_adv_B, running_adv_B)
        next_value_B = torch.where(valid_B, values_BT[:, t], next_value_B)
        adv_BT[:, t] = running_adv_B
    returns_BT = torch.where(mask, adv_BT + values_BT, 0.0)
    return masked_whiten(adv_BT, mask), returns_BT


def compute_rloo_outcome_advantage(token_level_rewards_BT: torch.Tensor, response_mask_BT: torch.Tensor,
                                   index: np.ndarray, epsilon: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """RLOO (Ahmadian et al. 2024, Eq. 5): A_i = R_i - mean_{j != i} R_j = n/(n-1) * (R_i - mean_g).

    Groups of one sample get 0. ``epsilon`` is accepted so every outcome estimator shares the same keyword
    arguments; RLOO divides by no statistic and does not need it.
    """
    scores_B = _episode_scores(token_level_rewards_BT, response_mask_BT)
    index = _as_ids(index, len(scores_B), "index")
    adv_B = torch.zeros_like(scores_B)
    for rows in _group_rows(index):
        if len(rows) > 1:
            group_scores = scores_B[rows]
            adv_B[rows] = len(rows) / (len(rows) - 1) * (group_scores - group_scores.mean())
    adv_BT = _broadcast(adv_B, response_mask_BT)
    return adv_BT, adv_BT


def compute_reinforce_plus_plus_outcome_advantage(token_level_rewards_BT: torch.Tensor,
                                                  response_mask_BT: torch.Tensor,
                                                  gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """REINFORCE++ (Hu 2025, §3): token return G_t = sum_{k>=t} gamma^(k-t) r_k within each response,
    then A = whiten(G) over all valid tokens of the batch (global advantage normalisation).
    """
    mask = response_mask_BT.bool()
    rewards_BT = torch.where(mask, token_level_rewards_BT.float(), 0.0)
    returns_BT = torch.zeros_like(rewards_BT)
    running_B = torch.zeros_like(rewards_BT[:, 0])
    for t in reversed(range(rewards_BT.shape[1])):
        running_B = rewards_BT[:, t] + gamma * running_B
        returns_BT[:, t] = running_B
    returns_BT = torch.where(mask, returns_BT, 0.0)
    return masked_whiten(returns_BT, mask), returns_BT


ADV_ESTIMATORS: dict[str, Callable[..., tuple[torch.Tensor, torch.Tensor]]] = {
    "grpo": compute_grpo_outcome_advantage,
    "gigpo": compute_gigpo_outcome_advantage,
    "gae": compute_gae_advantage_return,
    "rloo": compute_rloo_outcome_advantage,
    "reinforce_plus_plus": compute_reinforce_plus_plus_outcome_advantage,
}


def get_adv_estimator(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """The estimator registered as ``name`` (``algorithm.adv_estimator``)."""
    if name not in ADV_ESTIMATORS:
        raise ValueError(f"unknown algorithm.adv_estimator {name!r}; valid: {', '.join(ADV_ESTIMATORS)}")
    return ADV_ESTIMATORS[name]


# ---------------------------------------------------------------------------------------------------------
# Loss aggregation and losses
# ---------------------------------------------------------------------------------------------------------

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")


def agg_loss(loss_mat_BT: torch.Tensor, loss_mask_BT: torch.Tensor, loss_agg_mode: str,
             global_token_count: int | float | torch.Tensor | None = None) -> torch.Tensor:
    """Reduce a per-token loss to a scalar.

    - ``token-mean``: sum of valid token losses / number of valid tokens. With ``global_token_count`` (the
      valid tokens of the whole mini-batch across micro-batches and data-parallel ranks) that count is the
      divisor, so the per-part losses add up to the full-batch loss.
    - ``seq-mean-token-sum``: mean over sequences of each sequence's token sum.
    - ``seq-mean-token-mean``: mean over sequences of each sequence's token mean (GRPO paper form).
    - ``seq-mean-token-sum-norm``: mean over sequences of token sum / T, a constant length normaliser
      (Dr.GRPO, Liu et al. 2025). verl sums over sequences here instead; we take the mean the name says.

    Sequence means run over the rows with at least one valid token (all-masked rows are padding).
    """
    if loss_agg_mode not in LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; valid: {', '.join(LOSS_AGG_MODES)}")
    if loss_agg_mode == "token-mean":
        if global_token_count is None:
            return masked_mean(loss_mat_BT, loss_mask_BT)
        if float(global_token_count) <= 0:
            raise ValueError(f"global_token_count must be positive, got {global_token_count}")
        return masked_sum(loss_mat_BT, loss_mask_BT) / global_token_count
    if global_token_count is not None:
        raise ValueError(f"global_token_count only applies to loss_agg_mode='token-mean', not {loss_agg_mode!r}; "
                         "drop it for sequence-mean modes")
    if loss_agg_mode == "seq-mean-token-mean":
        per_seq_B = masked_mean(loss_mat_BT, loss_mask_BT, dim=-1)
    else:
        per_seq_B = masked_sum(loss_mat_BT, loss_mask_BT, dim=-1)
        if loss_agg_mode == "seq-mean-token-sum-norm":
            per_seq_B = per_seq_B / loss_mask_BT.shape[-1]
    non_empty_B = loss_mask_BT.bool().any(dim=-1)
    return masked_mean(per_seq_B, non_empty_B)


POLICY_LOSS_MODES = ("vanilla", "gspo")


def _clipped_surrogate(ratio_BT: torch.Tensor, advantages_BT: torch.Tensor, clip_ratio_low: float,
                       clip_ratio_high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate as a loss (Schulman et al. 2017, Eq. 7): max(-A r, -A clip(r, 1-low, 1+high)).

    Returns the token losses and where the clipped term is the active (larger) one.
    """
    unclipped_BT = -advantages_BT * ratio_BT
    clipped_BT = -advantages_BT * torch.clamp(ratio_BT, 1 - clip_ratio_low, 1 + clip_ratio_high)
    return torch.maximum(unclipped_BT, clipped_BT), clipped_BT > unclipped_BT


def _gspo_log_ratio(log_ratio_BT: torch.Tensor, log_prob_BT: torch.Tensor,
                    response_mask_BT: torch.Tensor) -> torch.Tensor:
    """GSPO-token log ratio (Zheng et al. 2025, Eq. 13): sg[log s_i] + log pi_t - sg[log pi_t].

    log s_i is the mean token log-ratio of sequence i, so the value equals the sequence-level importance
    ratio s_i on every token while the gradient flows through each token's log-probability.
    """
    seq_log_ratio_B = masked_mean(log_ratio_BT, response_mask_BT, dim=-1)
    return seq_log_ratio_B.detach().unsqueeze(-1) + log_prob_BT - log_prob_BT.detach()


def compute_policy_loss(old_log_prob_BT: torch.Tensor, log_prob_BT: torch.Tensor, advantages_BT: torch.Tensor,
                        response_mask_BT: torch.Tensor, clip_ratio_low: float = 0.2, clip_ratio_high: float = 0.2,
                        clip_ratio_c: float = 3.0, loss_agg_mode: str = "token-mean", loss_mode: str = "vanilla",
                        global_token_count: int | float | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Clipped policy-gradient loss.

    ``loss_mode="vanilla"``: token-level PPO ratio r_t = pi/pi_old in the clipped surrogate (Schulman et
    al. 2017) with dual clip (Ye et al. 2020): for A < 0 the loss is at most -A * clip_ratio_c.
    ``loss_mode="gspo"``: GSPO (Zheng et al. 2025), the sequence-level ratio s_i = exp(mean_t log r_t)
    clipped with the same bounds and no dual clip; the paper's objective corresponds to
    ``loss_agg_mode="seq-mean-token-mean"`` (and small clip ranges, e.g. 3e-4 / 4e-4).

    Returns ``pg_loss`` (scalar with grad) and detached diagnostics ``pg_clipfrac``, ``ppo_kl``
    (mean of log pi_old - log pi), ``pg_clipfrac_lower`` (dual-clip fraction; 0 for GSPO).
    """
    if loss_mode not in POLICY_LOSS_MODES:
        raise ValueError(f"unknown policy loss_mode {loss_mode!r}; valid: {', '.join(POLICY_LOSS_MODES)}")
    if clip_ratio_c <= 1.0:
        raise ValueError(f"clip_ratio_c must be > 1 for dual-clip PPO, got {clip_ratio_c}")
    mask = response_mask_BT.bool()
    log_ratio_BT = torch.where(mask, log_prob_BT - old_log_prob_BT, 0.0).clamp(-20.0, 20.0)
    ppo_kl = masked_mean(-log_ratio_BT, mask)
    if loss_mode == "gspo":
        ratio_BT = torch.exp(_gspo_log_ratio(log_ratio_BT, torch.where(mask, log_prob_BT, 0.0), mask).clamp(max=10.0))
        losses_BT, clipped_BT = _clipped_surrogate(ratio_BT, advantages_BT, clip_ratio_low, clip_ratio_high)
        dual_clipped_BT = torch.zeros_like(clipped_BT)
    else:
        ratio_BT = torch.exp(log_ratio_BT)
        losses_BT, clipped_BT = _clipped_surrogate(ratio_BT, advantages_BT, clip_ratio_low, clip_ratio_high)
        # dual clip (Ye et al. 2020, Eq. 5): for A < 0 the loss is capped at -A * c
        cap_BT = -advantages_BT * clip_ratio_c
        dual_clipped_BT = (advantages_BT < 0) & (losses_BT > cap_BT)
        losses_BT = torch.where(dual_clipped_BT, cap_BT, losses_BT)
    return {
        "pg_loss": agg_loss(losses_BT, mask, loss_agg_mode, global_token_count),
        "pg_clipfrac": masked_mean(clipped_BT.float(), mask).detach(),
        "ppo_kl": ppo_kl.detach(),
        "pg_clipfrac_lower": masked_mean(dual_clipped_BT.float(), mask).detach(),
    }


def compute_entropy_loss(entropy_BT: torch.Tensor, response_mask_BT: torch.Tensor, loss_agg_mode: str,
                         global_token_count: int | float | torch.Tensor | None = None) -> torch.Tensor:
    """Aggregated token entropy; the actor subtracts ``entropy_coeff`` times this (an entropy bonus)."""
    return agg_loss(entropy_BT, response_mask_BT, loss_agg_mode, global_token_count)


def compute_value_loss(vpreds_BT: torch.Tensor, returns_BT: torch.Tensor, values_BT: torch.Tensor,
                       response_mask_BT: torch.Tensor, cliprange_value: float, loss_agg_mode: str,
                       global_token_count: int | float | torch.Tensor | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (PPO2 baselines; Schulman et al. 2017):
    L = 1/2 max((V - R)^2, (clip(V, V_old - c, V_old + c) - R)^2). Returns (loss, fraction clipped).
    """
    clipped_BT = torch.clamp(vpreds_BT, values_BT - cliprange_value, values_BT + cliprange_value)
    losses1_BT = (vpreds_BT - returns_BT) ** 2
    losses2_BT = (clipped_BT - returns_BT) ** 2
    vf_loss = 0.5 * agg_loss(torch.maximum(losses1_BT, losses2_BT), response_mask_BT, loss_agg_mode,
                             global_token_count)
    vf_clipfrac = masked_mean((losses2_BT > losses1_BT).float(), response_mask_BT).detach()
    return vf_loss, vf_clipfrac


# ---------------------------------------------------------------------------------------------------------
# KL
# ---------------------------------------------------------------------------------------------------------

KL_PENALTY_TYPES = ("kl", "abs", "mse", "low_var_kl")


def kl_penalty(logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor, kl_penalty_type: str) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate from sampled tokens (Schulman 2020, "Approximating KL divergence").

    ``kl``: k1 = logp - ref. ``abs``: |logp - ref|. ``mse``: k2 = 1/2 (logp - ref)^2.
    ``low_var_kl``: k3 = exp(ref - logp) - (ref - logp) - 1, clamped to [-10, 10]; ref - logp is first
    limited to [-20, 20] so exp cannot overflow into inf (which would turn the gradient into nan).
    """
    if kl_penalty_type not in KL_PENALTY_TYPES:
        raise ValueError(f"unknown kl_penalty type {kl_penalty_type!r}; valid: {', '.join(KL_PENALTY_TYPES)}")
    diff_BT = logp_BT.float() - ref_logp_BT.float()
    if kl_penalty_type == "kl":
        return diff_BT
    if kl_penalty_type == "abs":
        return diff_BT.abs()
    if kl_penalty_type == "mse":
        return 0.5 * diff_BT.square()
    ref_minus_logp_BT = (-diff_BT).clamp(-20.0, 20.0)
    return (torch.exp(ref_minus_logp_BT) - ref_minus_logp_BT - 1).clamp(-10.0, 10.0)


class FixedKLController:
    """Constant KL coefficient."""

    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """A fixed coefficient ignores the observed KL."""


class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019, §2.2): beta <- beta (1 + clip(KL/target - 1, ±0.2) n/H)."""

    def __init__(self, init_kl_coef: float, target_kl: float, horizon: int):
        if target_kl <= 0 or horizon <= 0:
            raise ValueError(f"adaptive KL needs target_kl > 0 and horizon > 0, got {target_kl}, {horizon}")
        self.value = init_kl_coef
        self.target = target_kl
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move the coefficient toward the target KL after ``n_steps`` samples at ``current_kl``."""
        error = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + error * n_steps / self.horizon


def apply_kl_penalty(token_level_scores_BT: torch.Tensor, old_logp_BT: torch.Tensor, ref_logp_BT: torch.Tensor,
                     response_mask_BT: torch.Tensor, kl_coef: float,
                     kl_penalty_type: str) -> tuple[torch.Tensor, float]:
    """KL in the reward (Ziegler et al. 2019, Eq. 2): r_t = score_t - beta * KL_t on valid tokens.

    Returns the penalised rewards and the batch mean of each sequence's mean token KL (feed it to the
    KL controller's ``update``).
    """
    kld_BT = torch.where(response_mask_BT.bool(), kl_penalty(old_logp_BT, ref_logp_BT, kl_penalty_type), 0.0)
    rewards_BT = token_level_scores_BT - kl_coef * kld_BT
    mean_kl = masked_mean(kld_BT, response_mask_BT, dim=-1).mean()
    return rewards_BT, float(mean_kl)


# ---------------------------------------------------------------------------------------------------------
# Reward shaping and sample filtering
# ---------------------------------------------------------------------------------------------------------


def groups_with_reward_variance(index: np.ndarray, scores_B: torch.Tensor | np.ndarray) -> np.ndarray:
    """Dynamic sampling (DAPO, Yu et al. 2025, Eq. 11): True for samples whose uid group holds at least two
    different scores. All-equal groups (including single-sample groups) give zero GRPO advantage and are
    dropped.
    """
    scores = torch.as_tensor(scores_B, dtype=torch.float32).cpu().numpy()
    index = _as_ids(index, len(scores), "index")
    keep_B = np.zeros(len(scores), dtype=bool)
    for rows in _group_rows(index):
        keep_B[rows] = scores[rows].max() != scores[rows].min()
    return keep_B


def invalid_action_penalty(token_level_scores_BT: torch.Tensor, response_mask_BT: torch.Tensor,
                           is_action_valid_B: torch.Tensor | np.ndarray,
                           coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract p = ``coef * (1 - valid)`` at each sample's last valid token (verl-agent's format penalty).

    Returns the new scores and p (float32, shape (B,)). GiGPO also subtracts p from the sample's step
    return (see :func:`compute_step_discounted_returns`), as verl-agent's ``apply_invalid_action_penalty``
    lowers ``step_rewards``.
    """
    invalid_B = 1.0 - torch.as_tensor(is_action_valid_B).to(torch.float32)
    penalty_B = coef * invalid_B
    scores_BT = token_level_scores_BT - place_reward_on_last_token(penalty_B, response_mask_BT)
    return scores_BT, penalty_B
