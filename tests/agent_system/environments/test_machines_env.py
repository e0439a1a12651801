"""The machines environment: procedures, rules, projection, task splits, manager and chance level."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest

from agent_system.environments import make_env_manager
from agent_system.environments.categories import MACHINE_TYPES
from agent_system.environments.env_package.machines.envs import (
    BUTTONS,
    PROCEDURES,
    SUCCESS_REWARD,
    MachineGame,
    MachineTask,
)
from agent_system.environments.env_package.machines.projection import first_named, machines_projection
from agent_system.environments.env_package.machines.tasks import (
    SPLITS,
    main as write_slots,
    make_tasks,
    task_from_kwargs,
    task_split,
    task_to_kwargs,
)
from agent_system.environments.machines_manager import MachinesEnvironmentManager
from agent_system.skills.library import load_skill_library
from tests.conftest import REPO_ROOT, trainer_config
from verl.utils.dataset import load_task_slots

SKILLS = REPO_ROOT / "skills" / "machines"


def task(machine: str = "pump", buttons: str = "green yellow white red blue") -> MachineTask:
    return MachineTask(machine, "old", "garage", tuple(buttons.split()))


# ------------------------------------------------------------------------------------ procedures


def test_procedures_are_arbitrary_orders_that_no_fixed_button_order_shares():
    assert tuple(PROCEDURES) == MACHINE_TYPES and len(MACHINE_TYPES) >= 4
    for procedure in PROCEDURES.values():
        assert len(procedure) == 3 and len(set(procedure)) == 3 and set(procedure) <= set(BUTTONS)
    # each machine starts with its own button, so one fixed reply (e.g. "red, blue, green") starts one type at most
    assert len({p[0] for p in PROCEDURES.values()}) == len(PROCEDURES)


def test_each_skill_file_states_its_machines_procedure():
    library = load_skill_library(SKILLS, MACHINE_TYPES)
    for machine, procedure in PROCEDURES.items():
        text = library.files[library.skill_for(machine)].text
        stated = re.search(r"Press ([a-z]+), ([a-z]+), ([a-z]+)\.", text)
        assert stated is not None and tuple(stated.groups()) == procedure, (machine, text)
    general = library.files["general_skills"].text
    assert not any(button in general.lower().split() for button in BUTTONS)  # no procedure in the general file


# ------------------------------------------------------------------------------------------ rules


def test_the_procedure_starts_the_machine_and_pays_only_on_the_winning_press():
    game = MachineGame(task("lift"), max_steps=3)
    assert game.admissible == ["green", "yellow", "white", "red", "blue"]
    assert [game.step("blue"), game.step("yellow")] == [0.0, 0.0]
    assert game.pressed == ["blue", "yellow"] and game.admissible == ["green", "white", "red"] and not game.done
    assert game.step("red") == SUCCESS_REWARD
    assert game.won and game.done and not game.jammed
    with pytest.raises(RuntimeError, match="over"):
        game.step("green")


def test_press_reward_pays_each_right_press_short_of_the_start_and_leaves_success_unchanged():
    game = MachineGame(task("lift"), max_steps=3, press_reward=1.0)
    assert [game.step("blue"), game.step("yellow"), game.step("red")] == [1.0, 1.0, SUCCESS_REWARD]
    assert game.won
    jammed = MachineGame(task("lift"), max_steps=3, press_reward=1.0)
    assert [jammed.step("blue"), jammed.step("red")] == [1.0, 0.0]  # the wrong press jams and pays nothing
    assert jammed.jammed and not jammed.won


def test_a_wrong_button_jams_the_machine_and_ends_the_episode():
    game = MachineGame(task("pump"), max_steps=10)
    game.step("red")
    assert game.step("green") == 0.0  # blue comes second
    assert game.jammed and game.done and not game.won and game.pressed == ["red"]


def test_an_output_naming_no_button_uses_up_a_turn_and_the_episode_ends_when_it_cannot_be_won():
    game = MachineGame(task("oven"), max_steps=4)
    assert game.step(None) == 0.0 and game.turns == 1 and not game.done  # 3 turns left for 3 presses
    game.step("green")
    assert not game.done
    game.step(None)  # 1 turn left for 2 presses
    assert game.done and not game.won and not game.jammed


def test_pressing_a_lit_or_unknown_button_is_refused():
    game = MachineGame(task("pump"), max_steps=3)
    game.step("red")
    for button in ("red", "purple"):
        with pytest.raises(ValueError, match="not an admissible button"):
            game.step(button)


def test_a_task_must_name_a_known_machine_and_order_all_five_buttons():
    with pytest.raises(ValueError, match="unknown machine 'kettle'"):
        task("kettle")
    with pytest.raises(ValueError, match="ordering of red, blue, green, yellow, white"):
        task(buttons="red blue green yellow")
    with pytest.raises(ValueError, match="adjective"):
        MachineTask("pump", "", "garage", BUTTONS)


# ------------------------------------------------------------------------------------- projection


@pytest.mark.parametrize("text, admissible, expected", [
    ("- Press blue, yellow, red.", ["red", "blue", "yellow"], "blue"),
    ("- Press blue, yellow, red.", ["red", "yellow"], "yellow"),  # blue is lit: not an action any more
    ("The RED button.", ["red", "blue"], "red"),
    ("I would redo it: Blue", ["red", "blue"], "blue"),  # whole words only
    ("[green] [white]", ["white", "green"], "green"),
    ("The task is to start the old pump in the garage.", ["red", "blue"], None),
    ("", ["red"], None),
])
def test_the_first_admissible_button_named_is_the_action(text, admissible, expected):
    assert first_named(text, admissible) == expected
    buttons, valid = machines_projection([text], [admissible])
    assert buttons == [expected] and valid == [expected is not None]


def test_projection_never_raises_on_random_text():
    rng = random.Random(0)
    alphabet = "red blue<>[]()\n\\.*+?" + "".join(chr(c) for c in range(0x4e00, 0x4e10))
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        buttons, valid = machines_projection([text], [list(BUTTONS)])
        assert valid == [buttons[0] is not None]


# ------------------------------------------------------------------------------------------- tasks


def test_splits_are_disjoint_balanced_and_reproducible():
    drawn = {split: make_tasks(split, 40, seed=3) for split in SPLITS}
    for split, tasks in drawn.items():
        assert len(set(tasks)) == 40 and all(task_split(t) == split for t in tasks)
        assert [t.machine for t in tasks[:8]] == list(MACHINE_TYPES) * 2
    assert not set(drawn["train"]) & set(drawn["val"]) and not set(drawn["val"]) & set(drawn["test"])
    assert make_tasks("val", 40, seed=3) == drawn["val"] and make_tasks("val", 40, seed=4) != drawn["val"]
    rng = random.Random(0)
    every = [MachineTask(rng.choice(MACHINE_TYPES), "old", "lab", tuple(rng.sample(BUTTONS, 5))) for _ in range(3000)]
    shares = [sum(task_split(t) == s for t in every) / len(every) for s in SPLITS]
    assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)
    with pytest.raises(ValueError, match="unknown split"):
        make_tasks("dev", 1)


def test_task_slots_round_trip_through_the_trainer_loader(tmp_path):
    paths = write_slots(["--local_dir", str(tmp_path), "--train", "8", "--val", "4", "--test", "4", "--seed", "1"])
    for split, size in (("train", 8), ("val", 4), ("test", 4)):
        rows = load_task_slots(str(paths[split]), "data.files")
        assert [task_from_kwargs(r) for r in rows] == make_tasks(split, size, seed=1)
        assert all(r["data_source"] == "machines" for r in rows)


def test_a_slot_without_a_task_is_a_clear_error():
    with pytest.raises(ValueError, match="machines.tasks --local_dir"):
        task_from_kwargs({"seed": 3, "data_source": "alfworld"})
    assert task_from_kwargs(task_to_kwargs(task("mixer"))) == task("mixer")


# ----------------------------------------------------------------------------------------- manager


def kwargs_of(*tasks: MachineTask) -> list[dict]:
    return [dict(task_to_kwargs(t), seed=0) for t in tasks]


def test_manager_plays_episodes_with_prompts_skills_and_infos():
    manager = MachinesEnvironmentManager(num_envs=2, max_steps=4, history_length=1)
    manager.set_skill_context_fn(lambda c: f"### MACHINE: {c} ###\n- secret\n\n" if c == "pump" else "")
    obs, infos = manager.reset(kwargs_of(task("pump"), task("mixer")))
    assert obs["text"][0] == ("### MACHINE: pump ###\n- secret\n\nTask: start the old pump in the garage.\n"
                              "Pressed so far: none.\nButtons you can press: [green] [yellow] [white] [red] [blue].\n"
                              "Which button do you press next? Answer with one color.")
    assert obs["text"][1].startswith("Task: start the old mixer")
    assert [manager.task_category(i) for i in range(2)] == ["pump", "mixer"] == [manager.metric_tags(0)[0], "mixer"]
    assert infos[0] == {"won": False, "jammed": False, "admissible_commands": list(task().buttons)}

    obs, rewards, dones, infos = manager.step(["Press red!", "nothing"])
    assert rewards.tolist() == [0.0, 0.0] and dones.tolist() == [False, False]  # mixer: 3 turns for 3 presses
    assert [i["is_action_valid"] for i in infos] == [True, False]
    obs, rewards, dones, infos = manager.step(["blue", "Yellow"])
    assert "Pressed so far: ..., blue.\nButtons you can press: [green] [yellow] [white]." in obs["text"][0]
    assert obs["anchor"] == ["pump|red,blue", "mixer|yellow"] and not dones.any()
    obs, rewards, dones, infos = manager.step(["green", "blue"])  # the mixer needs green second: it jams
    assert rewards.tolist() == [SUCCESS_REWARD, 0.0] and dones.all()
    assert (infos[0]["won"], infos[1]["won"], infos[1]["jammed"]) == (True, False, True)
    obs, rewards, dones, infos = manager.step([None, None])
    assert rewards.tolist() == [0.0, 0.0] and dones.all() and infos[0]["won"]


def test_manager_rejects_misuse_with_clear_errors():
    manager = MachinesEnvironmentManager(num_envs=1, max_steps=3, history_length=2)
    with pytest.raises(RuntimeError, match="before reset"):
        manager.step(["red"])
    manager.reset(kwargs_of(task()))
    with pytest.raises(ValueError, match="still playing"):
        manager.step([None])
    with pytest.raises(ValueError, match="1 envs"):
        manager.step(["red", "blue"])
    manager.step(["blue"])  # jams: pump starts with red
    with pytest.raises(ValueError, match="over; pass None"):
        manager.step(["red"])
    with pytest.raises(ValueError, match="env.max_steps=2"):
        MachinesEnvironmentManager(num_envs=1, max_steps=2, history_length=2)


def test_the_trainer_builds_the_manager_from_env_name():
    cfg = trainer_config(["env.env_name=machines", "env.max_steps=4", "env.history_length=2"])
    manager = make_env_manager(cfg.env, "val", 3)
    assert isinstance(manager, MachinesEnvironmentManager) and (manager.num_envs, manager.max_steps) == (3, 4)
    assert manager.press_reward == 0.0  # binary episode reward by default
    cfg = trainer_config(["env.env_name=machines", "env.max_steps=3", "env.machines.press_reward=1"])
    manager = make_env_manager(cfg.env, "train", 1)
    manager.reset(kwargs_of(task("oven")))
    assert manager.step(["green"])[1].tolist() == [1.0]


@pytest.mark.parametrize("press_reward", [-1.0, 5.0])
def test_a_press_reward_that_is_negative_or_outweighs_the_start_is_refused(press_reward):
    with pytest.raises(ValueError, match="env.machines.press_reward"):
        MachinesEnvironmentManager(num_envs=1, max_steps=3, history_length=2, press_reward=press_reward)


# ------------------------------------------------------------------------------------ chance level


def play(manager: MachinesEnvironmentManager, policy) -> np.ndarray:
    """Play every env to the end with ``policy(admissible) -> text``; returns who won."""
    obs, infos = manager.reset(kwargs_of(*tasks_played))
    dones = np.zeros(manager.num_envs, dtype=bool)
    while not dones.all():
        texts = [None if d else policy(info["admissible_commands"]) for d, info in zip(dones, infos)]
        obs, _, dones, infos = manager.step(texts)
    return np.array([info["won"] for info in infos])


tasks_played = make_tasks("val", 400, seed=0)


def test_a_random_policy_wins_at_chance_level():
    rng = random.Random(0)
    manager = MachinesEnvironmentManager(num_envs=len(tasks_played), max_steps=3, history_length=2)
    won = np.concatenate([play(manager, lambda admissible: rng.choice(admissible)) for _ in range(15)])
    assert abs(won.mean() - 1 / 60) < 0.008, won.mean()  # 6000 episodes; 1/60 = 1.7 %


def test_fixed_position_and_fixed_order_policies_stay_near_chance():
    manager = MachinesEnvironmentManager(num_envs=len(tasks_played), max_steps=3, history_length=2)
    assert play(manager, lambda admissible: admissible[0]).mean() < 0.05  # always the first button shown
    for order in itertools.permutations(BUTTONS):  # one fixed reply, whatever the machine
        assert play(manager, lambda admissible: ", ".join(order)).mean() <= 0.25 + 1e-9
