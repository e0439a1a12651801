"""benchmarks/compare.py: the interleaving arithmetic, the command line, and baselines that do the same work.

The benchmark scripts import each other by module name (they run as ``python benchmarks/compare.py``), so
these tests put ``benchmarks/`` on the import path the same way.
"""

from __future__ import annotations

import random

import pytest

from verl.utils.fs import REPO_ROOT


@pytest.fixture(autouse=True)
def benchmarks_on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))


def test_sides_run_interleaved_and_ratios_are_taken_within_a_round():
    from interleave import add_ratios, check_targets, interleave, summarize

    calls, a_values, b_values = [], iter([10.0, 30.0, 20.0]), iter([5.0, 10.0, 40.0])
    sides = [lambda: calls.append("A") or {"a": next(a_values)}, lambda: calls.append("B") or {"b": next(b_values)}]
    rounds = interleave(sides, reps=3)
    assert calls == ["A", "B", "A", "B", "A", "B"]
    add_ratios(rounds, {"a_over_b": ("a", "b")})
    assert [r["a_over_b"] for r in rounds] == [2.0, 3.0, 0.5]
    summary = summarize(rounds)
    assert summary["a"] == 20.0 and summary["b"] == 10.0 and summary["a_over_b"] == 2.0  # median of the ratios
    assert summary["range"]["a"] == [10.0, 30.0] and summary["range"]["a_over_b"] == [0.5, 3.0]
    assert summary["reps"] == 3
    assert check_targets(summary, {"a_over_b": (">=", 2.0), "b": ("<=", 5.0)}) == {
        "a_over_b": {"target": ">= 2", "met": True}, "b": {"target": "<= 5", "met": False}}
    with pytest.raises(ValueError, match="reps"):
        interleave(sides, reps=0)


def test_quick_shrinks_the_runs_not_the_rounds_and_bad_arguments_are_rejected():
    from compare import SIZES, parse_args

    quick, full = parse_args(["--quick"]), parse_args([])
    assert quick.reps == full.reps == 3 and quick.sections == ["trainer", "env", "retrieval"]
    for key, (full_size, quick_size) in SIZES.items():
        assert getattr(full, key) == full_size and getattr(quick, key) == quick_size <= full_size
    assert parse_args(["--quick", "--episode_steps", "7", "--only", "retrieval"]).episode_steps == 7
    assert parse_args([]).num_workers is None and parse_args(["--num_workers", "3"]).num_workers == 3
    for bad in (["--only", "trainer,gpu"], ["--steps", "1"], ["--reps", "0"], ["--single_queries", "4"]):
        with pytest.raises(SystemExit):
            parse_args(bad)


def test_remove_padding_makes_our_update_pack_its_sequences():
    from compare import parse_args
    from compare_trainer import ours_overrides

    assert "actor_rollout_ref.model.use_remove_padding=False" in ours_overrides(parse_args(["--quick"]))
    assert "actor_rollout_ref.model.use_remove_padding=True" in ours_overrides(parse_args(["--remove_padding"]))


def test_every_env_side_times_the_same_games_after_a_warm_up_on_others():
    from compare_env import timed_games

    warm_up, timed = timed_games(16, 2, games=140, seed=1)
    assert timed == [(1000 + k) % 140 for k in range(32)] and len(warm_up) == 16
    assert not set(warm_up) & set(timed[:16])  # the warm-up does not pre-load the first timed round's games
    assert timed_games(16, 2, 140, 1) == (warm_up, timed)  # the ideal (1 env) gets the same list


def played_results(step, played: list[int]) -> list[tuple]:
    """(observation, reward, done, admissible commands) of the envs that took a command this step."""
    observations, rewards, dones, infos = step
    return [(observations[i], rewards[i], dones[i], infos[i]["admissible_commands"]) for i in played]


def test_the_env_baselines_play_exactly_the_games_our_workers_play(ray_cluster, valid_seen_games):
    from compare_env import InProcessEnvs, OneActorPerEnv

    from agent_system.environments.env_package.alfworld.envs import AlfworldEnvs

    games, rng = valid_seen_games[:2], random.Random(0)
    backends = [AlfworldEnvs(2, max_steps=3, num_cpus_per_env=0.1, step_timeout_s=120.0),
                OneActorPerEnv(2, max_steps=3), InProcessEnvs(2, max_steps=3)]
    try:
        resets = [backend.reset(games) for backend in backends]
        assert all(obs == resets[0][0] for obs, _ in resets)
        commands = [rng.choice(info["admissible_commands"]) for info in resets[0][1]]
        for _ in range(3):
            steps = [backend.step(commands) for backend in backends]
            played = [i for i, command in enumerate(commands) if command is not None]
            assert all(played_results(step, played) == played_results(steps[0], played) for step in steps)
            commands = [None if done else rng.choice(info["admissible_commands"])
                        for done, info in zip(steps[0][2], steps[0][3])]
        assert steps[0][2] == [True, True]  # max_steps=3 ended both episodes
    finally:
        for backend in backends:
            backend.close()


def test_the_reference_design_server_answers_what_our_server_answers(dense_index):
    import httpx
    from compare_retrieval import REFERENCE_SCRIPT

    from agent_system.environments.env_package.search.server_process import RetrievalServer

    queries = ["Gary Groth editor of a comics magazine", "tennis player born in 1960"]
    with RetrievalServer(dense_index, script=REFERENCE_SCRIPT) as reference, RetrievalServer(dense_index) as ours:
        for query in queries:
            payload = {"query": query, "topk": 3, "return_scores": True}
            theirs = httpx.post(reference.url, json=payload, timeout=60).json()["result"][0]
            mine = httpx.post(ours.url, json=payload, timeout=60).json()["result"][0]
            assert [hit["document"] for hit in theirs] == [hit["document"] for hit in mine]
            assert [hit["score"] for hit in theirs] == pytest.approx([hit["score"] for hit in mine], abs=1e-4)
        health = [httpx.get(f"{server.base_url}/health").json() for server in (reference, ours)]
        assert health[0]["num_docs"] == health[1]["num_docs"]
