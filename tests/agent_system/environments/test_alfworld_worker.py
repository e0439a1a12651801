"""One env worker holding several envs (in-process here; AlfworldEnvs runs it as a Ray actor)."""

from __future__ import annotations

import pytest

from agent_system.environments.env_package.alfworld.envs import worker_layout
from agent_system.environments.env_package.alfworld.session import GameSession
from agent_system.environments.env_package.alfworld.worker import EnvError, EnvWorker


def test_a_worker_plays_each_env_as_its_own_session(valid_seen_games):
    """Three envs in one worker, two on the same game, give what three separate sessions give."""
    paths = {0: valid_seen_games[0].path, 1: valid_seen_games[1].path, 2: valid_seen_games[0].path}
    worker, alone = EnvWorker(max_steps=4), {i: GameSession(max_steps=4) for i in paths}
    results = worker.reset(paths)
    assert results == {i: alone[i].reset(path) for i, path in paths.items()}
    for t in range(4):
        commands = {i: r.admissible_commands[(t + i) % len(r.admissible_commands)] for i, r in results.items()}
        results = worker.step(commands)
        assert results == {i: alone[i].step(command) for i, command in commands.items()}
    assert all(r.done for r in results.values())  # max_steps=4 counted per env


def test_a_game_that_raises_answers_an_error_for_its_env_only(tmp_path, valid_seen_games):
    broken = tmp_path / "game.tw-pddl"
    broken.write_text("{not json")
    worker = EnvWorker(max_steps=5)
    results = worker.reset({0: valid_seen_games[0].path, 1: str(broken)})
    assert isinstance(results[1], EnvError) and "cannot read ALFWorld game" in results[1].message
    assert not results[0].done
    step = worker.step({0: "look", 1: "look"})  # env 1 never loaded a game: an error, env 0 plays on
    assert isinstance(step[1], EnvError) and "reset" in step[1].message and step[0].observation


def test_worker_layout_is_one_process_per_reserved_core():
    assert worker_layout(16, 0.1, None) == (2, pytest.approx(0.8))  # 1.6 CPUs reserved -> 2 workers of 8 envs
    assert worker_layout(10, 0.1, None) == (1, pytest.approx(1.0))  # 1.0 (not 1.0000000000000002) -> 1
    assert worker_layout(3, 1.0, None) == (3, 1.0)  # verl-agent's one CPU per env: one worker per env
    assert worker_layout(5, 0.1, 2) == (2, pytest.approx(0.3))  # blocks of 3 and 2 envs
    assert worker_layout(2, 0.1, 8) == (2, pytest.approx(0.1))  # never more workers than envs
    with pytest.raises(ValueError, match="env.num_workers=0"):
        worker_layout(4, 0.1, 0)
    with pytest.raises(ValueError, match="env.resources_per_worker.num_cpus=0"):
        worker_layout(4, 0.0, None)
