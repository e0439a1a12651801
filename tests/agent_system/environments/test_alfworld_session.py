"""One ALFWorld game played in-process (what each Ray worker runs)."""

from __future__ import annotations

import json

import pytest

from agent_system.environments.env_package.alfworld.session import WIN_REWARD, GameSession
from tests.agent_system.environments.alfworld_fixtures import copy_game


def _walkthrough(path) -> list[str]:
    return json.loads(open(path).read())["walkthrough"]


@pytest.fixture(scope="module")
def session() -> GameSession:
    return GameSession(max_steps=50)


def test_walkthrough_wins_with_reward_on_the_last_step(session, valid_seen_games):
    game = valid_seen_games[0]
    first = session.reset(game.path)
    assert "Your task is to:" in first.observation and not first.done and not first.won
    assert "help" not in first.admissible_commands and "look" in first.admissible_commands
    plan = _walkthrough(game.path)
    results = [session.step(command) for command in plan]
    assert [r.reward for r in results] == [0.0] * (len(plan) - 1) + [WIN_REWARD]
    assert results[-1].won and results[-1].done and not any(r.done for r in results[:-1])
    with pytest.raises(RuntimeError, match="reset"):
        session.step("look")


def test_adversarial_commands_change_nothing(session, valid_seen_games):
    first = session.reset(valid_seen_games[1].path)
    for command in ["", "x" * 200_000, "\x00\u4e2d go to", "go to desk 99", "   ", "help"]:
        result = session.step(command)
        assert not result.done and result.reward == 0.0
        assert result.admissible_commands == first.admissible_commands
        if command != "help":
            assert result.observation == "Nothing happens."


def test_episode_ends_at_max_steps_without_a_win(valid_seen_games):
    short = GameSession(max_steps=2)
    short.reset(valid_seen_games[2].path)
    assert not short.step("look").done
    last = short.step("look")
    assert last.done and not last.won and last.reward == 0.0


def test_max_steps_must_be_positive():
    with pytest.raises(ValueError, match="env.max_steps"):
        GameSession(max_steps=0)


def test_game_without_logic_uses_the_wheel_files(tmp_path, session, valid_seen_games):
    """A game file with only the problem gets alfworld's own domain + grammar, goal from traj_data."""
    game = next(g for g in valid_seen_games if g.task_type == "pick_and_place")
    path = copy_game(game, tmp_path)
    data = json.loads(path.read_text())
    plan = data["walkthrough"]
    path.write_text(json.dumps({"pddl_problem": data["pddl_problem"], "solvable": True}))
    with pytest.raises(ValueError, match="traj_data.json"):
        session.reset(str(path))
    # pick_and_place_simple-<Object>-<Mrecep>-<Parent>-<scene>: ALFWorld's templated goal from traj_data
    _, obj, mrecep, parent, _ = path.parent.parent.name.split("-")
    traj = {
        "task_type": "pick_and_place_simple",
        "pddl_params": {"object_target": obj, "parent_target": parent, "object_sliced": False},
    }
    (path.parent / "traj_data.json").write_text(json.dumps({"task_type": "pick_and_place_simple"}))
    with pytest.raises(ValueError, match="pddl_params"):
        session.reset(str(path))
    (path.parent / "traj_data.json").write_text(json.dumps(traj))
    first = session.reset(str(path))
    assert first.observation.endswith(f"Your task is to: put a {obj.lower()} in {parent.lower()}.")
    assert [session.step(c) for c in plan][-1].won


def _play(session: GameSession, path: str, steps: int) -> list[tuple]:
    """An episode of the first ``steps`` admissible commands in turn, as comparable tuples."""
    result = session.reset(path)
    trace = [(result.observation, result.reward, result.done, result.admissible_commands)]
    for t in range(steps):
        result = session.step(result.admissible_commands[(3 * t) % len(result.admissible_commands)])
        trace.append((result.observation, result.reward, result.done, result.admissible_commands))
    return trace


def test_reused_translations_and_parses_leave_no_state_between_episodes(monkeypatch, valid_seen_games):
    """A game reset from the translation cache (again in the same session, or in another one) and rendered
    with cached template parses plays exactly as with TextWorld's own code (both translations, plain and
    optimised, and every parse done anew): the episode state lives in the rebuilt PddlState and in the
    symbols' contexts, never in a cache."""
    import fast_downward
    import textworld.envs.pddl.logic as pddl_logic
    import textworld.envs.pddl.textgen as textgen
    from textworld.logic import Rule

    from agent_system.environments.env_package.alfworld import parse_cache, translation_cache

    game, other = valid_seen_games[5].path, valid_seen_games[6].path
    first, second = GameSession(max_steps=50), GameSession(max_steps=50)
    symbols = parse_cache.install()
    with monkeypatch.context() as patch:  # uncached: the reference trace
        patch.setattr(pddl_logic, "fast_downward", fast_downward)
        patch.setattr(textgen, "_parse_and_convert", symbols.parse)
        patch.setattr(Rule, "parse_conjunctive_query", staticmethod(Rule.parse_conjunctive_query.uncached))
        reference = _play(first, game, 6)
    translator = translation_cache.install()
    assert translation_cache.install() is translator and parse_cache.install() is symbols  # once per process
    translation_cache.clear()
    parse_cache.clear()
    assert _play(first, game, 6) == reference  # first translation of the game in this process's cache...
    assert translator.translations.cache_info().misses == 1  # one translation for a new game (TextWorld: four)
    _play(first, other, 3)
    assert _play(first, game, 6) == reference  # ...then reused after another game and after a played episode
    assert _play(second, game, 6) == reference  # ...and by another session of the process
    assert translator.translations.cache_info().misses == 2
    assert symbols.cache_info().hits > symbols.cache_info().misses > 0
    assert Rule.parse_conjunctive_query.cache_info().hits > 0
