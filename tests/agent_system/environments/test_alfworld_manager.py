"""The ALFWorld manager end to end: real games in real Ray workers, the trainer's API."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import ray

from agent_system.environments import make_env_manager
from agent_system.environments.alfworld_manager import AlfworldEnvironmentManager
from agent_system.environments.env_package.alfworld import check_data
from agent_system.environments.env_package.alfworld.envs import WORKER_FAILED_OBSERVATION
from benchmarks import env_alfworld as benchmark
from tests.agent_system.environments.alfworld_fixtures import copy_game, env_config, kill_worker

SKILLS = "### GENERAL SKILLS ###\n- Search receptacles one by one.\n"


def _act(command: str) -> str:
    return f"<think>I will {command}.</think><action>{command}</action>"


def _plan(manager, seed: int) -> list[str]:
    return check_data.walkthrough_of(manager.game_for_seed(seed))


@pytest.fixture(scope="module")
def manager(ray_cluster, alfworld_root):
    manager = make_env_manager(env_config(alfworld_root, num_workers=2), split="val", num_envs=3)
    assert [manager.envs.worker_of(i) for i in range(3)] == [manager.envs.workers[0]] * 2 + [manager.envs.workers[1]]
    yield manager
    manager.close()
    manager.close()  # closing twice is allowed


@pytest.fixture(autouse=True)
def no_skills(manager):
    manager.set_skill_context_fn(lambda category: "")


def test_group_copies_share_a_game_and_seeds_index_the_sorted_list(manager, valid_seen_games):
    assert manager.game_for_seed(7 + len(valid_seen_games)) == valid_seen_games[7]
    obs, infos = manager.reset([{"seed": 7}, {"seed": 7}, {"seed": 8}])
    assert infos[0]["gamefile"] == infos[1]["gamefile"] == valid_seen_games[7].path
    assert infos[2]["gamefile"] == valid_seen_games[8].path
    assert obs["anchor"][0] == obs["anchor"][1] and obs["text"][0] == obs["text"][1]
    assert obs["image"] is None
    assert [manager.task_category(i) for i in range(3)] == [valid_seen_games[s].task_type for s in (7, 7, 8)]
    assert manager.metric_tags(2) == [valid_seen_games[8].task_type]
    assert all(info["task_type"] == valid_seen_games[s].task_type for info, s in zip(infos, (7, 7, 8)))


def test_a_gamefile_in_the_reset_kwargs_picks_the_game(manager, valid_seen_games):
    chosen = [valid_seen_games[11].path, valid_seen_games[3].path]
    _, infos = manager.reset([{"gamefile": chosen[0]}, {"gamefile": chosen[1]}, {"seed": 11}])
    assert [info["gamefile"] for info in infos] == [chosen[0], chosen[1], chosen[0]]
    with pytest.raises(ValueError, match="not one of the 140 games"):
        manager.reset([{"gamefile": "/elsewhere/game.tw-pddl"}] * 3)


def test_walkthrough_wins_and_finished_envs_take_none(manager):
    seeds = [0, 1, 2]
    plans = [_plan(manager, s) for s in seeds]
    _, infos = manager.reset([{"seed": s} for s in seeds])
    total = [0.0] * 3
    done = [False] * 3
    for t in range(max(map(len, plans))):
        texts = [None if done[i] else _act(plans[i][t]) for i in range(3)]
        obs, rewards, dones, infos = manager.step(texts)
        total = [a + float(r) for a, r in zip(total, rewards)]
        for i in range(3):
            if done[i]:  # a finished env repeats its last observation with reward 0
                assert rewards[i] == 0.0 and dones[i]
        done = list(dones)
        assert all(info["is_action_valid"] for info in infos)
    assert all(done) and total == [10.0] * 3 and all(info["won"] for info in infos)
    assert not any(info["worker_failed"] for info in infos)
    again, rewards, dones, _ = manager.step([None] * 3)
    assert again == obs and not rewards.any() and dones.all()


def test_prompt_holds_task_skills_history_step_and_admissible_actions(manager):
    manager.set_skill_context_fn(lambda category: f"{SKILLS}\n### TASK: {category} ###\n- Do it.\n\n")
    obs, infos = manager.reset([{"seed": 0}] * 3)
    first_obs = obs["anchor"][0]
    prompt = obs["text"][0]
    assert "Your task is to: " + first_obs.split("Your task is to: ")[1] in prompt
    assert f"{SKILLS}\n### TASK: {manager.task_category(0)} ###\n- Do it.\n\nThis is step 1." in prompt
    assert "[Observation]" not in prompt
    assert "'go to desk 1'" in prompt and "'help'" not in prompt
    assert "<think>" in prompt and "<action>" in prompt

    history = []
    for command in ["look", "inventory", "look"]:
        history.append((obs["anchor"][0], command))
        obs, _, _, infos = manager.step([_act(command)] * 3)
    prompt = obs["text"][0]
    assert "This is step 4." in prompt and "You have taken 3 step(s)" in prompt
    last_two = "\n".join(f"[Observation]: {o} [Action]: {a}" for o, a in history[-2:])
    assert last_two in prompt and first_obs not in prompt  # window = env.history_length = 2
    assert obs["anchor"][0] == "You are in the middle of a room. Looking quickly around you, you see nothing."
    assert f"Admissible actions: [{', '.join(repr(c) for c in infos[0]['admissible_commands'])}]" in prompt

    manager.set_skill_context_fn(lambda category: "")
    obs, _, _, _ = manager.step([_act("look")] * 3)
    assert "SKILLS" not in obs["text"][0] and "###" not in obs["text"][0]
    assert obs["text"][0].split("\n\n")[1].startswith("You have taken 4 step(s)")


def test_history_length_zero_shows_only_the_current_step(manager):
    no_history = AlfworldEnvironmentManager(manager.envs, manager.games, history_length=0)
    no_history.reset([{"seed": 0}] * 3)
    no_history.step([_act("look")] * 3)
    obs, _, _, _ = no_history.step([_act("inventory")] * 3)
    assert "This is step 3." in obs["text"][0] and "[Observation]" not in obs["text"][0]
    assert "You are not carrying anything." in obs["text"][0]


def test_train_split_plays_train_games(ray_cluster, alfworld_root):
    train = make_env_manager(env_config(alfworld_root), split="train", num_envs=1)
    train.close()
    assert len(train.games) == 3553 and all("/json_2.1.1/train/" in g.path for g in train.games)


def test_malformed_outputs_are_invalid_and_never_crash_a_worker(manager):
    manager.reset([{"seed": 3}] * 3)
    bad = ["", "<action>" * 10_000 + "x" * 1_000_000, "<think>我</think><action>\x00look\ud800</action>"]
    obs, rewards, dones, infos = manager.step(bad)
    assert [info["is_action_valid"] for info in infos] == [False] * 3
    assert not dones.any() and not rewards.any()
    assert obs["anchor"][:2] == ["Nothing happens."] * 2
    plan = _plan(manager, 3)
    for command in plan:  # the same workers still play the game to a win
        obs, rewards, dones, infos = manager.step([_act(command)] * 3)
    assert dones.all() and all(info["won"] and info["is_action_valid"] for info in infos)


def test_repeated_action_tags_execute_nothing(manager):
    """As the reference: the output is invalid and the game gets the empty command, so its state stays."""
    _, start_infos = manager.reset([{"seed": 0}] * 3)
    first = _plan(manager, 0)[0]
    repeated = [f"<think>go</think><action>{first}</action><action>{first}</action>",
                f"<think>go</think><action>{first}</action></action>"]
    obs, rewards, dones, infos = manager.step([*repeated, _act(first)])
    assert [info["is_action_valid"] for info in infos] == [False, False, True]
    assert obs["anchor"][:2] == ["Nothing happens."] * 2 and obs["anchor"][2] != "Nothing happens."
    assert infos[0]["admissible_commands"] == infos[1]["admissible_commands"] == start_infos[0]["admissible_commands"]
    assert infos[2]["admissible_commands"] != start_infos[0]["admissible_commands"]
    assert "[Action]: \n" in obs["text"][0] and f"[Action]: {first}" in obs["text"][2]  # the memory too
    assert not dones.any() and not rewards.any()


def test_killed_worker_is_replaced_and_all_its_episodes_fail(manager):
    """Envs 0 and 1 share worker 0 (the trade-off of several envs per process): killing it ends both
    episodes as failures; env 2, on worker 1, plays on to a win."""
    plans = [_plan(manager, s) for s in (4, 5, 6)]
    manager.reset([{"seed": s} for s in (4, 5, 6)])
    manager.step([_act(p[0]) for p in plans])
    victim, survivor = manager.envs.workers
    kill_worker(victim)
    _, rewards, dones, infos = manager.step([_act(p[1]) for p in plans])
    for i in (0, 1):
        assert dones[i] and not infos[i]["won"] and infos[i]["worker_failed"] and rewards[i] == 0.0
    assert not dones[2] and not infos[2]["worker_failed"]
    assert manager.envs.workers[0] != victim and manager.envs.workers[1] == survivor
    for t in range(2, len(plans[2])):  # the rollout completes for the other worker's env
        obs, _, dones, infos = manager.step([None, None, _act(plans[2][t])])
        assert obs["anchor"][:2] == [WORKER_FAILED_OBSERVATION] * 2 and not infos[0]["won"]
    assert infos[2]["won"] and dones.all() and not infos[0]["won"] and not infos[1]["won"]
    idle_victim = manager.envs.workers[1]
    kill_worker(idle_victim)  # a worker lost between episodes is replaced by the next reset
    _, infos = manager.reset([{"seed": 5}] * 3)  # the replacement workers play the next episode
    assert manager.envs.workers[1] != idle_victim
    for command in plans[1]:
        _, _, _, infos = manager.step([_act(command)] * 3)
    assert all(info["won"] and not info["worker_failed"] for info in infos)


def test_a_game_that_raises_fails_only_its_env(manager, monkeypatch):
    """A step that raises inside one game ends that env's episode; its worker and its neighbour go on."""
    plans = [_plan(manager, s) for s in (4, 5, 6)]
    manager.reset([{"seed": s} for s in (4, 5, 6)])
    worker = manager.envs.workers[0]

    def break_env_1_once(envs_worker):
        session = envs_worker._sessions[1]

        def fail(command):
            del session.step  # back to GameSession.step
            raise ZeroDivisionError("a game bug")

        session.step = fail
        return True

    assert ray.get(worker.__ray_call__.remote(break_env_1_once))
    _, _, dones, infos = manager.step([_act(p[0]) for p in plans])
    assert dones.tolist() == [False, True, False] and infos[1]["worker_failed"] and not infos[1]["won"]
    assert manager.envs.workers[0] == worker  # not replaced: the process is fine
    manager.reset([{"seed": 5}] * 3)  # the next reset gives env 1 a working game again
    for command in plans[1]:
        _, _, _, infos = manager.step([_act(command)] * 3)
    assert all(info["won"] for info in infos)


def test_hung_worker_is_replaced_at_the_timeout_and_its_episodes_fail(ray_cluster, alfworld_root):
    """A worker that stops answering (SIGSTOP: alive, silent) costs one step of env.step_timeout_s, not the run."""
    manager = make_env_manager(env_config(alfworld_root, step_timeout_s=15.0, num_workers=2), split="val",
                               num_envs=2)
    try:
        manager.set_skill_context_fn(lambda category: "")
        plans = [_plan(manager, s) for s in (4, 5)]
        manager.reset([{"seed": s} for s in (4, 5)])
        victim = manager.envs.worker_of(1)
        os.kill(ray.get(victim.pid.remote()), signal.SIGSTOP)
        started = time.perf_counter()
        _, rewards, dones, infos = manager.step([_act(p[0]) for p in plans])
        assert 15.0 <= time.perf_counter() - started < 90
        assert dones[1] and infos[1]["worker_failed"] and not infos[1]["won"] and rewards[1] == 0.0
        assert not dones[0] and not infos[0]["worker_failed"]
        assert manager.envs.worker_of(1) != victim  # the stopped process was killed and replaced
        manager.reset([{"seed": 5}] * 2)  # the replacement plays the next episode
        _, _, _, infos = manager.step([_act(plans[1][0])] * 2)
        assert not any(info["worker_failed"] for info in infos)
    finally:
        manager.close()


def test_contract_violations_are_clear_errors(manager):
    with pytest.raises(ValueError, match="int 'seed'"):
        manager.reset([{"seed": 1}, {}, {"seed": 2}])
    with pytest.raises(ValueError, match="int 'seed'"):
        manager.reset([{"seed": "1"}] * 3)
    with pytest.raises(ValueError, match="3 envs"):
        manager.reset([{"seed": 1}])
    manager.reset([{"seed": 1}] * 3)
    with pytest.raises(ValueError, match="still playing"):
        manager.step([_act("look"), None, _act("look")])
    with pytest.raises(TypeError, match="str"):
        manager.step([_act("look"), 42, _act("look")])


def test_missing_out_of_distribution_games_say_how_to_get_them(ray_cluster, alfworld_root):
    cfg = env_config(alfworld_root, alfworld={"eval_dataset": "eval_out_of_distribution"})
    with pytest.raises(FileNotFoundError, match="valid_unseen.*alfworld-download"):
        make_env_manager(cfg, split="test", num_envs=1)


def test_check_data_replays_games_and_reports_per_task_type(ray_cluster, alfworld_root, capsys):
    args = ["--split", "valid_seen", "--limit", "3", "--num_envs", "2", "--data_path", str(alfworld_root)]
    code = check_data.main(args)
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["games"] == summary["won"] == 3 and summary["failed"] == []
    assert sum(v["games"] for v in summary["per_task_type"].values()) == 3


def test_check_data_fails_on_a_game_its_walkthrough_cannot_win(ray_cluster, tmp_path, valid_seen_games, capsys):
    broken = copy_game(valid_seen_games[0], tmp_path / "json_2.1.1" / "valid_seen")
    data = json.loads(broken.read_text())
    data["walkthrough"] = data["walkthrough"][:1]
    broken.write_text(json.dumps(data))
    code = check_data.main(["--split", "valid_seen", "--data_path", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 1 and summary["won"] == 0 and summary["failed"] == [str(broken)]


def test_benchmark_reports_throughput_and_latency(ray_cluster, alfworld_root, capsys):
    result = benchmark.main(
        ["--num_envs", "2", "--rounds", "2", "--latency_repeats", "1", "--data_path", str(alfworld_root)]
    )
    assert json.loads(capsys.readouterr().out) == result
    assert result["env_steps_per_s"]["2"] > 0 and result["reset_ms_p50"] > 0 and result["step_ms_p50"] > 0


def test_fuzzed_outputs_are_counted_right_and_never_win(manager):
    """Issue 15 item 5, the cheap share: random and adversarial outputs through real games (see
    benchmarks/fuzz_outputs.py; ``benchmarks/faults.py`` runs more)."""
    from benchmarks import fuzz_outputs

    report = fuzz_outputs.run_manager(manager, fuzz_outputs.alfworld_sample, 24, seed=3,
                                      reset_kwargs=lambda episode: [{"seed": episode} for _ in range(3)])
    assert report.ok(), report.as_dict()
    assert report.outputs >= 24 and report.invalid_outputs > 0
