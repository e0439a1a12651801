"""Hand-computed and property checks for verl.trainer.ppo.core_algos."""

import math
import statistics

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from verl.trainer.ppo import core_algos as ca
from verl.utils.torch_functional import place_reward_on_last_token

EPS = 1e-6
LN2 = math.log(2.0)


def assert_close(actual, expected):
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=torch.float32), atol=1e-5, rtol=1e-5)


def per_token(adv_B, mask_BT):
    return torch.tensor(adv_B, dtype=torch.float32).unsqueeze(-1) * mask_BT


# ---------------------------------------------------------------------------------------------------------
# GRPO: uid "a" holds trajectory a1 (two steps, episode reward 1) and a2 (one step, reward 0);
# uid "b" holds a single trajectory b1 (reward 5), a group of size 1.
# ---------------------------------------------------------------------------------------------------------
GRPO_MASK = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]])
GRPO_REWARDS = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
GRPO_UID = np.array(["a", "a", "a", "b"])
GRPO_TRAJ = np.array(["a1", "a1", "a2", "b1"])


def test_grpo_cross_steps_by_hand():
    # group a over all step samples: scores 1, 1, 0 -> mean 2/3, unbiased std sqrt((1/9+1/9+4/9)/2) = 1/sqrt(3)
    std = 1 / math.sqrt(3)
    expected = [(1 / 3) / (std + EPS), (1 / 3) / (std + EPS), (-2 / 3) / (std + EPS), 5 / (1 + EPS)]
    adv, returns = ca.compute_grpo_outcome_advantage(GRPO_REWARDS, GRPO_MASK, GRPO_UID, GRPO_TRAJ)
    assert_close(adv, per_token(expected, GRPO_MASK))
    assert_close(returns, adv)


def test_grpo_unique_trajectories_by_hand():
    # group a over one score per trajectory: 1, 0 -> mean 1/2, std sqrt(1/2)
    std = math.sqrt(0.5)
    expected = [0.5 / (std + EPS), 0.5 / (std + EPS), -0.5 / (std + EPS), 5 / (1 + EPS)]
    adv, _ = ca.compute_grpo_outcome_advantage(GRPO_REWARDS, GRPO_MASK, GRPO_UID, GRPO_TRAJ,
                                               compute_mean_std_cross_steps=False)
    assert_close(adv, per_token(expected, GRPO_MASK))


def test_dr_grpo_only_subtracts_the_mean():
    adv, _ = ca.compute_grpo_outcome_advantage(GRPO_REWARDS, GRPO_MASK, GRPO_UID, GRPO_TRAJ,
                                               norm_adv_by_std_in_grpo=False)
    assert_close(adv, per_token([1 / 3, 1 / 3, -2 / 3, 5.0], GRPO_MASK))
    adv, _ = ca.compute_grpo_outcome_advantage(GRPO_REWARDS, GRPO_MASK, GRPO_UID, GRPO_TRAJ,
                                               norm_adv_by_std_in_grpo=False, compute_mean_std_cross_steps=False)
    assert_close(adv, per_token([0.5, 0.5, -0.5, 5.0], GRPO_MASK))


def test_grpo_rejects_misaligned_ids():
    with pytest.raises(ValueError, match="index"):
        ca.compute_grpo_outcome_advantage(GRPO_REWARDS, GRPO_MASK, GRPO_UID[:3], GRPO_TRAJ)


# ---------------------------------------------------------------------------------------------------------
# GiGPO: uid a has a1 (s0 -> s1, success, reward 10) and a2 (s0 -> s2 -> s1, failure); uid b has b1 (s0,
# reward 10). Step returns with gamma 0.5 and env reward 10 on the winning step: a1 [5, 10], a2 [0, 0, 0],
# b1 [10]. b's "s0" is a different task, so it does not join a's s0 group.
# ---------------------------------------------------------------------------------------------------------
GIGPO_MASK = torch.tensor([[1, 1], [1, 0], [1, 1], [1, 1], [1, 0], [1, 1]])
GIGPO_UID = np.array(["a", "a", "a", "a", "a", "b"])
GIGPO_TRAJ = np.array(["a1", "a1", "a2", "a2", "a2", "b1"])
GIGPO_ANCHORS = np.array(["s0", "s1", "s0", "s2", "s1", "s0"], dtype=object)
GIGPO_STEP_IDS = np.array([0, 1, 0, 1, 2, 0])
GIGPO_STEP_ENV_REWARDS = torch.tensor([0.0, 10.0, 0.0, 0.0, 0.0, 10.0])
GIGPO_EPISODE = torch.tensor([10.0, 10.0, 0.0, 0.0, 0.0, 10.0])


def gigpo_rewards():
    return place_reward_on_last_token(GIGPO_EPISODE, GIGPO_MASK)


def test_step_discounted_returns_follow_step_order():
    returns = ca.compute_step_discounted_returns(GIGPO_STEP_ENV_REWARDS, GIGPO_TRAJ, GIGPO_STEP_IDS, gamma=0.5)
    assert_close(returns, [5.0, 10.0, 0.0, 0.0, 0.0, 10.0])
    # shuffled samples: t1 = [0, 10], t2 = [0, 0, 1] -> t1 [5, 10], t2 [0.25, 0.5, 1]
    shuffled = ca.compute_step_discounted_returns(torch.tensor([10.0, 0.0, 0.0, 1.0, 0.0]),
                                                  np.array(["t1", "t2", "t1", "t2", "t2"]),
                                                  np.array([1, 0, 0, 2, 1]), gamma=0.5)
    assert_close(shuffled, [10.0, 0.25, 5.0, 1.0, 0.5])


def test_step_penalty_lowers_only_its_own_step_return():
    # a1's first step was invalid (penalty 0.1): its return 5 becomes 4.9; the later step keeps 10, as
    # verl-agent subtracts the penalty from the already discounted step returns
    penalty = torch.tensor([0.1, 0.0, 0.0, 0.1, 0.0, 0.0])
    returns = ca.compute_step_discounted_returns(GIGPO_STEP_ENV_REWARDS, GIGPO_TRAJ, GIGPO_STEP_IDS, gamma=0.5,
                                                 step_penalty_B=penalty)
    assert_close(returns, [4.9, 10.0, 0.0, -0.1, 0.0, 10.0])
    with pytest.raises(ValueError, match="one penalty per sample"):
        ca.compute_step_discounted_returns(GIGPO_STEP_ENV_REWARDS, GIGPO_TRAJ, GIGPO_STEP_IDS, 0.5, penalty[:2])


def test_step_discounted_returns_reject_repeated_steps():
    with pytest.raises(ValueError, match="repeated step ids"):
        ca.compute_step_discounted_returns([1.0, 2.0], np.array(["t", "t"]), np.array([0, 0]), gamma=0.9)


def test_gigpo_mean_norm_by_hand():
    step_returns = ca.compute_step_discounted_returns(GIGPO_STEP_ENV_REWARDS, GIGPO_TRAJ, GIGPO_STEP_IDS, 0.5)
    adv, _ = ca.compute_gigpo_outcome_advantage(gigpo_rewards(), step_returns, GIGPO_MASK, GIGPO_ANCHORS,
                                                GIGPO_UID, GIGPO_TRAJ, step_advantage_w=0.5, mode="mean_norm")
    # episode: a over its five step samples [10, 10, 0, 0, 0] -> mean 4 -> +6 / -4; b alone -> 10 - 0
    # steps: (a,s0) [5, 0] -> +2.5 / -2.5; (a,s1) [10, 0] -> +5 / -5; (a,s2) and (b,s0) alone -> 0
    expected = [6 + 0.5 * 2.5, 6 + 0.5 * 5, -4 - 0.5 * 2.5, -4 + 0.5 * 0, -4 - 0.5 * 5, 10 + 0.5 * 0]
    assert_close(adv, per_token(expected, GIGPO_MASK))


def test_gigpo_mean_std_norm_by_hand():
    step_returns = torch.tensor([5.0, 10.0, 0.0, 0.0, 0.0, 10.0])
    adv, returns = ca.compute_gigpo_outcome_advantage(gigpo_rewards(), step_returns, GIGPO_MASK, GIGPO_ANCHORS,
                                                      GIGPO_UID, GIGPO_TRAJ, step_advantage_w=0.5,
                                                      mode="mean_std_norm")
    std_a = math.sqrt((36 + 36 + 16 + 16 + 16) / 4)  # [10, 10, 0, 0, 0]: mean 4, unbiased variance 30
    win, loss = 6 / (std_a + EPS), -4 / (std_a + EPS)
    s0 = 2.5 / (math.sqrt(12.5) + EPS)  # [5, 0]: std sqrt(12.5)
    s1 = 5 / (math.sqrt(50) + EPS)  # [10, 0]
    lone_b = 10 / (1 + EPS)
    expected = [win + 0.5 * s0, win + 0.5 * s1, loss - 0.5 * s0, loss, loss - 0.5 * s1, lone_b]
    assert_close(adv, per_token(expected, GIGPO_MASK))
    assert_close(returns, adv)


def test_gigpo_episode_statistics_per_trajectory_on_request():
    adv, _ = ca.compute_gigpo_outcome_advantage(gigpo_rewards(), torch.zeros(6), GIGPO_MASK, GIGPO_ANCHORS,
                                                GIGPO_UID, GIGPO_TRAJ, step_advantage_w=0.0,
                                                compute_mean_std_cross_steps=False)
    assert_close(adv, per_token([5.0, 5.0, -5.0, -5.0, -5.0, 10.0], GIGPO_MASK))  # a over [10, 0]


# The reference implementation's numbers (issue 8, item 1), verbatim. gamma 0.95 where it matters.
def _reference_gigpo(episode_rewards, step_returns, anchors, traj, w, mode):
    n = len(anchors)
    mask = torch.ones(n, 1)
    adv, _ = ca.compute_gigpo_outcome_advantage(torch.tensor(episode_rewards).unsqueeze(-1),
                                                torch.as_tensor(step_returns), mask, np.array(anchors, dtype=object),
                                                np.array(["task"] * n), np.array(traj), step_advantage_w=w, mode=mode)
    return adv.squeeze(-1)


def assert_reference(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected), atol=5e-4, rtol=0)


@pytest.mark.parametrize("mode, expected", [("mean_norm", [5.0, -5.0]), ("mean_std_norm", [0.7071, -0.7071])])
def test_reference_lone_anchor_gets_zero_step_advantage(mode, expected):
    # trajectories a and b with one step each, anchors "A" and "B", episode rewards 10 and 0, step returns
    # [10, 0], w = 1 (before this fix: [15.0, -5.0] and [10.7071, -0.7071])
    adv = _reference_gigpo([10.0, 0.0], [10.0, 0.0], ["A", "B"], ["a", "b"], w=1.0, mode=mode)
    assert_reference(adv, expected)


@pytest.mark.parametrize("mode, expected", [("mean_norm", [3.333, -6.667, 3.333]),
                                            ("mean_std_norm", [0.577, -1.155, 0.577])])
def test_reference_episode_statistics_over_all_step_samples(mode, expected):
    # a has 2 steps and reward 10, b has 1 step and reward 0; rows [a0, b0, a1]; anchors [s0, s0, s1]; w = 0
    returns = ca.compute_step_discounted_returns([0.0, 0.0, 10.0], np.array(["a", "b", "a"]), np.array([0, 0, 1]),
                                                 gamma=0.95)
    adv = _reference_gigpo([10.0, 0.0, 10.0], returns, ["s0", "s0", "s1"], ["a", "b", "a"], w=0.0, mode=mode)
    assert_reference(adv, expected)


def test_reference_invalid_action_penalty_lowers_the_step_part():
    # a0 (anchor s0, valid, step return 10) and b0 (anchor s0, invalid, step return 0), penalty coef 0.1,
    # mean_norm -> step part of the advantage [5.05, -5.05] (before this fix: [5.0, -5.0])
    mask = torch.ones(2, 1)
    scores, penalty = ca.invalid_action_penalty(place_reward_on_last_token([10.0, 0.0], mask), mask,
                                                np.array([True, False]), coef=0.1)
    returns = ca.compute_step_discounted_returns([10.0, 0.0], np.array(["a", "b"]), np.array([0, 0]), gamma=0.95,
                                                 step_penalty_B=penalty)

    def advantage(w):
        adv, _ = ca.compute_gigpo_outcome_advantage(scores, returns, mask, np.array(["s0", "s0"], dtype=object),
                                                    np.array(["task", "task"]), np.array(["a", "b"]),
                                                    step_advantage_w=w, mode="mean_norm")
        return adv.squeeze(-1)

    assert_reference(advantage(1.0) - advantage(0.0), [5.05, -5.05])


def test_identical_returns_give_exactly_zero_gigpo_advantage():
    """Eight copies of one invalid step (-0.1 everywhere): float64 statistics give exactly 0 at both levels."""
    rewards_BT = torch.tensor([[0.0, -0.1]] * 8)
    adv_BT, _ = ca.compute_gigpo_outcome_advantage(rewards_BT, torch.full((8,), -0.1), torch.ones(8, 2),
                                                   np.array(["s"] * 8, dtype=object), np.array(["a"] * 8),
                                                   np.arange(8).astype(str), mode="mean_std_norm")
    assert torch.equal(adv_BT, torch.zeros(8, 2))


def test_gigpo_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mean_norm, mean_std_norm"):
        ca.compute_gigpo_outcome_advantage(gigpo_rewards(), GIGPO_EPISODE, GIGPO_MASK, GIGPO_ANCHORS,
                                           GIGPO_UID, GIGPO_TRAJ, mode="std")


def _similarity_advantages(anchors, step_returns, enable_similarity, thresh=0.85):
    n = len(anchors)
    mask = torch.ones(n, 1)
    # distinct trajectories with equal episode rewards: the episode advantage is 0, leaving the step part
    adv, _ = ca.compute_gigpo_outcome_advantage(torch.zeros(n, 1), torch.tensor(step_returns), mask,
                                                np.array(anchors, dtype=object), np.array(["u"] * n),
                                                np.array([f"t{i}" for i in range(n)]), mode="mean_norm",
                                                enable_similarity=enable_similarity, similarity_thresh=thresh)
    return adv.squeeze(-1)


def test_gigpo_similarity_groups_near_duplicate_anchors():
    anchors = ["abcdefghij", "abcdefghik", "zzzzzzzzzz"]  # SequenceMatcher ratio: 0.9, then 0
    assert_close(_similarity_advantages(anchors, [4.0, 2.0, 7.0], True), [1.0, -1.0, 0.0])
    assert_close(_similarity_advantages(anchors, [4.0, 2.0, 7.0], True, thresh=0.95), [0.0, 0.0, 0.0])
    assert_close(_similarity_advantages(anchors, [4.0, 2.0, 7.0], False), [0.0, 0.0, 0.0])


def test_gigpo_similarity_compares_with_the_cluster_representative():
    # B is 0.9-similar to A and joins it; C is 0.9-similar to B but only 0.8 to the representative A
    anchors = ["aaaaaaaaaa", "aaaaaaaaab", "aaaaaaaabb"]
    assert_close(_similarity_advantages(anchors, [4.0, 2.0, 7.0], True), [1.0, -1.0, 0.0])
    anchors = ["aaaaaaaaaa", "aaaaaaaaab", "aaaaaaaabb", "aaaaaaaabc"]  # C and D group around C
    assert_close(_similarity_advantages(anchors, [4.0, 2.0, 7.0, 3.0], True), [1.0, -1.0, 2.0, -2.0])


# ---------------------------------------------------------------------------------------------------------
# GAE, RLOO, REINFORCE++
# ---------------------------------------------------------------------------------------------------------


def whiten(values):
    mean, var = statistics.mean(values), statistics.variance(values)
    return [(v - mean) / math.sqrt(var + 1e-8) for v in values]


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 99.0]])
    values = torch.tensor([[0.5, 0.4, 0.2], [1.0, 0.5, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # gamma 0.9, lam 0.8 (gamma*lam = 0.72). Row 0: deltas -0.14, -0.22, 0.8 -> A = 0.11632, 0.356, 0.8
    # Row 1: deltas 0.9*0.5 - 1 = -0.55, 2 - 0.5 = 1.5 -> A = -0.55 + 0.72*1.5 = 0.53, 1.5
    raw = [0.11632, 0.356, 0.8, 0.53, 1.5]
    adv, returns = ca.compute_gae_advantage_return(rewards, values, mask, gamma=0.9, lam=0.8)
    assert_close(returns, [[0.61632, 0.756, 1.0], [1.53, 2.0, 0.0]])
    w = whiten(raw)
    assert_close(adv, [[w[0], w[1], w[2]], [w[3], w[4], 0.0]])


def test_gae_skips_tokens_inside_a_masked_hole():
    holed, _ = ca.compute_gae_advantage_return(torch.tensor([[0.0, 50.0, 1.0], [1.0, 0.0, 0.0]]),
                                               torch.tensor([[0.5, 77.0, 0.2], [0.3, 0.0, 0.0]]),
                                               torch.tensor([[1, 0, 1], [1, 0, 0]]), gamma=0.9, lam=0.8)
    compact, _ = ca.compute_gae_advantage_return(torch.tensor([[0.0, 1.0], [1.0, 0.0]]),
                                                 torch.tensor([[0.5, 0.2], [0.3, 0.0]]),
                                                 torch.tensor([[1, 1], [1, 0]]), gamma=0.9, lam=0.8)
    assert_close(holed[:, [0, 2]], compact)
    assert holed[0, 1].item() == 0.0


def test_rloo_by_hand():
    scores = [1.0, 0.0, 2.0, 3.0, 4.0, 1.0]
    uid = np.array(["a", "a", "a", "b", "c", "c"])
    mask = torch.ones(6, 2)
    adv, _ = ca.compute_rloo_outcome_advantage(place_reward_on_last_token(scores, mask), mask, uid)
    # a: 1 - (0+2)/2 = 0, 0 - (1+2)/2 = -1.5, 2 - (1+0)/2 = 1.5; b alone: 0; c: 4 - 1 = 3, 1 - 4 = -3
    assert_close(adv, per_token([0.0, -1.5, 1.5, 0.0, 3.0, -3.0], mask))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("xyz"), st.integers(-5, 5)), min_size=1, max_size=8))
def test_rloo_equals_leave_one_out_mean(samples):
    uid = np.array([group for group, _ in samples])
    scores = [float(score) for _, score in samples]
    mask = torch.ones(len(samples), 1)
    adv, _ = ca.compute_rloo_outcome_advantage(torch.tensor(scores).unsqueeze(-1), mask, uid)
    for i, (group, score) in enumerate(samples):
        others = [s for j, (g, s) in enumerate(samples) if g == group and j != i]
        expected = score - statistics.mean(others) if others else 0.0
        assert adv[i, 0].item() == pytest.approx(expected, abs=1e-5)


def test_reinforce_plus_plus_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 2.0], [0.0, 4.0, 99.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    # gamma 0.5: row 0 -> G = 1 + 0.5*(0 + 0.5*2) = 1.5, 1, 2; row 1 -> 2, 4
    adv, returns = ca.compute_reinforce_plus_plus_outcome_advantage(rewards, mask, gamma=0.5)
    assert_close(returns, [[1.5, 1.0, 2.0], [2.0, 4.0, 0.0]])
    w = whiten([1.5, 1.0, 2.0, 2.0, 4.0])
    assert_close(adv, [[w[0], w[1], w[2]], [w[3], w[4], 0.0]])


def test_registry_lists_valid_names_on_error():
    assert set(ca.ADV_ESTIMATORS) == {"grpo", "gigpo", "gae", "rloo", "reinforce_plus_plus"}
    assert ca.get_adv_estimator("gigpo") is ca.compute_gigpo_outcome_advantage
    with pytest.raises(ValueError, match="grpo, gigpo, gae, rloo, reinforce_plus_plus"):
        ca.get_adv_estimator("ppo")


# ---------------------------------------------------------------------------------------------------------
# Loss aggregation and losses
# ---------------------------------------------------------------------------------------------------------
LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]])
LOSS_MASK = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])  # the last row is padding


@pytest.mark.parametrize("mode, expected", [
    ("token-mean", (1 + 2 + 4) / 3),
    ("seq-mean-token-sum", (3 + 4) / 2),
    ("seq-mean-token-mean", (1.5 + 4) / 2),
    ("seq-mean-token-sum-norm", (3 / 3 + 4 / 3) / 2),
])
def test_agg_loss_modes_by_hand(mode, expected):
    assert ca.agg_loss(LOSS, LOSS_MASK, mode).item() == pytest.approx(expected)


def test_agg_loss_global_token_count_splits_add_up():
    full = ca.agg_loss(LOSS, LOSS_MASK, "token-mean")
    halves = [ca.agg_loss(LOSS[rows], LOSS_MASK[rows], "token-mean", global_token_count=3) for rows in (
        slice(0, 1), slice(1, 3))]
    assert sum(halves).item() == pytest.approx(full.item())
    assert halves[0].item() == pytest.approx(3 / 3)


def test_agg_loss_rejects_bad_arguments():
    with pytest.raises(ValueError, match="token-mean, seq-mean-token-sum"):
        ca.agg_loss(LOSS, LOSS_MASK, "sum")
    with pytest.raises(ValueError, match="only applies to loss_agg_mode='token-mean'"):
        ca.agg_loss(LOSS, LOSS_MASK, "seq-mean-token-mean", global_token_count=3)
    with pytest.raises(ValueError, match="positive"):
        ca.agg_loss(LOSS, LOSS_MASK, "token-mean", global_token_count=0)


# Five valid tokens covering each clipping case (eps 0.2, c 3) plus one masked token holding junk.
PPO_RATIO = [1.5, 0.5, 0.5, 5.0, 1.1, 1e6]
PPO_ADV = torch.tensor([[1.0, 1.0, -1.0, -1.0, -2.0, 100.0]])
PPO_MASK = torch.tensor([[1, 1, 1, 1, 1, 0]])
PPO_OLD = torch.full((1, 6), -1.0)


def ppo_new_logp():
    return (PPO_OLD + torch.log(torch.tensor([PPO_RATIO]))).requires_grad_(True)


def test_vanilla_ppo_loss_both_clip_sides_and_dual_clip():
    logp = ppo_new_logp()
    out = ca.compute_policy_loss(PPO_OLD, logp, PPO_ADV, PPO_MASK)
    # token losses: A>0 r=1.5 -> -1.2 (upper clip); A>0 r=0.5 -> -0.5; A<0 r=0.5 -> 0.8 (lower clip);
    # A<0 r=5 -> max(5, 1.2) = 5 capped at -A*c = 3 (dual clip); A=-2 r=1.1 -> 2.2
    assert out["pg_loss"].item() == pytest.approx((-1.2 - 0.5 + 0.8 + 3.0 + 2.2) / 5, abs=1e-5)
    assert out["pg_clipfrac"].item() == pytest.approx(2 / 5)
    assert out["pg_clipfrac_lower"].item() == pytest.approx(1 / 5)
    log_ratios = [math.log(r) for r in PPO_RATIO[:5]]
    assert out["ppo_kl"].item() == pytest.approx(-sum(log_ratios) / 5, abs=1e-6)
    (grad,) = torch.autograd.grad(out["pg_loss"], logp)
    # d(-A r)/d logp = -A r on unclipped tokens, 0 where a clip is active; divided by 5 tokens
    assert_close(grad, [[0.0, -0.5 / 5, 0.0, 0.0, 2.2 / 5, 0.0]])


def test_gspo_uses_the_sequence_ratio():
    old = torch.zeros(2, 3)
    # row 0: token log-ratios ln 1.2 and 0 -> s = sqrt(1.2) inside [0.8, 1.2]; row 1: s = 2 -> clipped at 1.2
    logp = torch.tensor([[math.log(1.2), 0.0, 9.0], [LN2, LN2, -9.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    out = ca.compute_policy_loss(old, logp, torch.ones(2, 3), mask, loss_mode="gspo",
                                 loss_agg_mode="seq-mean-token-mean")
    s0 = math.sqrt(1.2)
    assert out["pg_loss"].item() == pytest.approx((-s0 - 1.2) / 2, abs=1e-5)
    assert out["pg_clipfrac"].item() == pytest.approx(0.5)
    assert out["pg_clipfrac_lower"].item() == 0.0
    (grad,) = torch.autograd.grad(out["pg_loss"], logp)
    # each valid token of row 0 gets -A s0 / (2 sequences * 2 tokens); row 1 is clipped
    assert_close(grad, [[-s0 / 4, -s0 / 4, 0.0], [0.0, 0.0, 0.0]])


def test_policy_loss_rejects_bad_modes():
    with pytest.raises(ValueError, match="vanilla, gspo"):
        ca.compute_policy_loss(PPO_OLD, PPO_OLD, PPO_ADV, PPO_MASK, loss_mode="cispo")
    with pytest.raises(ValueError, match="clip_ratio_c"):
        ca.compute_policy_loss(PPO_OLD, PPO_OLD, PPO_ADV, PPO_MASK, clip_ratio_c=1.0)


@pytest.mark.parametrize("loss_mode", ["vanilla", "gspo"])
def test_policy_loss_with_global_count_matches_full_batch(loss_mode):
    torch.manual_seed(0)
    old, adv = torch.randn(4, 5), torch.randn(4, 5)
    logp = (old + 0.3 * torch.randn(4, 5)).requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]])
    full = ca.compute_policy_loss(old, logp, adv, mask, loss_mode=loss_mode)["pg_loss"]
    (full_grad,) = torch.autograd.grad(full, logp)
    count = int(mask.sum())
    parts = [ca.compute_policy_loss(old[rows], logp[rows], adv[rows], mask[rows], loss_mode=loss_mode,
                                    global_token_count=count)["pg_loss"] for rows in (slice(0, 2), slice(2, 4))]
    (split_grad,) = torch.autograd.grad(sum(parts), logp)
    assert sum(parts).item() == pytest.approx(full.item(), abs=1e-6)
    torch.testing.assert_close(split_grad, full_grad)


def test_entropy_loss_aggregates_over_valid_tokens():
    assert ca.compute_entropy_loss(LOSS, LOSS_MASK, "token-mean").item() == pytest.approx(7 / 3)


def test_value_loss_by_hand():
    vpreds = torch.tensor([[1.0, 2.0, 0.0, 50.0]])
    values = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    returns = torch.tensor([[2.0, 0.0, 1.0, -50.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # clip 0.2: token 0 -> max((1-2)^2, (0.7-2)^2) = 1.69 (clipped); token 1 -> max(4, 0.49) = 4; token 2 -> 1
    loss, clipfrac = ca.compute_value_loss(vpreds, returns, values, mask, cliprange_value=0.2,
                                           loss_agg_mode="token-mean")
    assert loss.item() == pytest.approx(0.5 * (1.69 + 4 + 1) / 3)
    assert clipfrac.item() == pytest.approx(1 / 3)


# ---------------------------------------------------------------------------------------------------------
# KL
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, expected", [
    ("kl", [LN2, -LN2]),
    ("abs", [LN2, LN2]),
    ("mse", [0.5 * LN2 ** 2, 0.5 * LN2 ** 2]),
    # k3 = e^(ref-logp) - (ref-logp) - 1: ref-logp = -ln2 -> 0.5 + ln2 - 1; ref-logp = ln2 -> 2 - ln2 - 1
    ("low_var_kl", [0.5 + LN2 - 1, 2 - LN2 - 1]),
])
def test_kl_penalty_types_by_hand(kind, expected):
    logp = torch.tensor([[math.log(0.5), math.log(0.25)]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)]])
    assert_close(ca.kl_penalty(logp, ref, kind), [expected])


def test_low_var_kl_is_clamped_with_finite_gradient():
    assert ca.kl_penalty(torch.tensor([-30.0]), torch.tensor([0.0]), "low_var_kl").item() == 10.0
    logp = torch.tensor([-100.0], requires_grad=True)  # exp(100) overflows float32 without the inner clamp
    (grad,) = torch.autograd.grad(ca.kl_penalty(logp, torch.tensor([0.0]), "low_var_kl").sum(), logp)
    assert grad.item() == 0.0


def test_kl_penalty_rejects_unknown_type():
    with pytest.raises(ValueError, match="kl, abs, mse, low_var_kl"):
        ca.kl_penalty(torch.zeros(1), torch.zeros(1), "k9")


def test_kl_controllers():
    fixed = ca.FixedKLController(0.1)
    fixed.update(current_kl=5.0, n_steps=100)
    assert fixed.value == 0.1
    adaptive = ca.AdaptiveKLController(init_kl_coef=0.1, target_kl=0.05, horizon=100)
    adaptive.update(current_kl=0.1, n_steps=10)  # error 1 clipped to 0.2 -> x (1 + 0.2 * 10/100)
    assert adaptive.value == pytest.approx(0.102)
    adaptive.update(current_kl=0.055, n_steps=10)  # error 0.1 -> x 1.01
    assert adaptive.value == pytest.approx(0.102 * 1.01)
    with pytest.raises(ValueError, match="target_kl"):
        ca.AdaptiveKLController(0.1, target_kl=0.0, horizon=100)


def test_apply_kl_penalty_by_hand():
    scores = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    old = torch.tensor([[math.log(0.5), math.log(0.5)], [math.log(0.25), 3.0]])
    ref = torch.tensor([[math.log(0.25), math.log(0.5)], [math.log(0.5), -7.0]])
    rewards, mean_kl = ca.apply_kl_penalty(scores, old, ref, mask, kl_coef=0.1, kl_penalty_type="kl")
    assert_close(rewards, [[-0.1 * LN2, 1.0], [2.0 + 0.1 * LN2, 0.0]])
    assert mean_kl == pytest.approx((LN2 / 2 - LN2) / 2)


# ---------------------------------------------------------------------------------------------------------
# Reward shaping and filtering
# ---------------------------------------------------------------------------------------------------------


def test_groups_with_reward_variance():
    keep = ca.groups_with_reward_variance(np.array(["a", "a", "b", "b", "c", "a"]),
                                          torch.tensor([1.0, 0.0, 2.0, 2.0, 3.0, 1.0]))
    assert keep.tolist() == [True, True, False, False, False, True]


def test_invalid_action_penalty():
    scores = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    new_scores, penalty = ca.invalid_action_penalty(scores, mask, np.array([True, False]), coef=0.1)
    assert_close(new_scores, [[0.0, 1.0, 0.0], [0.0, 0.0, -0.1]])
    assert_close(penalty, [0.0, 0.1])


# ---------------------------------------------------------------------------------------------------------
# Masked tokens contribute nothing: junk written to masked positions leaves every output unchanged.
# ---------------------------------------------------------------------------------------------------------


def _junk_at_masked(t, mask, value):
    return torch.where(mask.bool(), t, torch.full_like(t, value))


OUTPUT_FUNCTIONS = {
    "grpo": lambda r, v, m: ca.compute_grpo_outcome_advantage(r, m, np.array(["a", "a", "b"]), np.arange(3)),
    "gigpo": lambda r, v, m: ca.compute_gigpo_outcome_advantage(r, torch.tensor([1.0, 2.0, 3.0]), m,
                                                                np.array(["s", "s", "s"], dtype=object),
                                                                np.array(["a", "a", "b"]), np.arange(3)),
    "gae": lambda r, v, m: ca.compute_gae_advantage_return(r, v, m, gamma=0.9, lam=0.95),
    "rloo": lambda r, v, m: ca.compute_rloo_outcome_advantage(r, m, np.array(["a", "a", "b"])),
    "reinforce_plus_plus": lambda r, v, m: ca.compute_reinforce_plus_plus_outcome_advantage(r, m, gamma=0.9),
    "policy_loss": lambda r, v, m: tuple(ca.compute_policy_loss(v, r, v, m).values()),
    "gspo_loss": lambda r, v, m: tuple(ca.compute_policy_loss(v, r, v, m, loss_mode="gspo").values()),
    "value_loss": lambda r, v, m: ca.compute_value_loss(r, v, r, m, 0.2, "seq-mean-token-mean"),
    "kl_in_reward": lambda r, v, m: ca.apply_kl_penalty(r, r, v, m, 0.1, "low_var_kl"),
}


@pytest.mark.parametrize("name", list(OUTPUT_FUNCTIONS))
def test_masked_tokens_do_not_change_outputs(name):
    torch.manual_seed(1)
    rewards, values = torch.randn(3, 4), torch.randn(3, 4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]])
    fn = OUTPUT_FUNCTIONS[name]
    clean = fn(rewards, values, mask)
    dirty = fn(_junk_at_masked(rewards, mask, 1e4), _junk_at_masked(values, mask, -1e4), mask)
    for a, b in zip(clean, dirty):
        a, b = torch.as_tensor(a), torch.as_tensor(b)
        if a.shape == mask.shape:  # per-token outputs: compare the valid tokens
            a, b = a[mask.bool()], b[mask.bool()]
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", list(ca.ADV_ESTIMATORS))
def test_estimators_are_zero_at_masked_tokens(name):
    torch.manual_seed(2)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]])
    for output in OUTPUT_FUNCTIONS[name](torch.randn(3, 4), torch.randn(3, 4), mask):
        assert (output[~mask.bool()] == 0).all()


def test_identical_rewards_give_exactly_zero_grpo_advantage():
    """-0.1 (an invalid-action penalty) eight times: the float32 mean misses it by one rounding step, which
    divided by (std 0 + eps) used to give every sample an advantage of 0.0074; it must be exactly 0."""
    rewards_BT = torch.tensor([[0.0, -0.1]] * 8)
    assert rewards_BT.sum(-1).mean() != rewards_BT[0].sum()  # the float32 trap this guards against
    uid = np.array(["a"] * 8, dtype=object)
    adv_BT, _ = ca.compute_grpo_outcome_advantage(rewards_BT, torch.ones(8, 2), uid, np.arange(8).astype(str))
    assert torch.equal(adv_BT, torch.zeros(8, 2))
