"""The evaluation protocol: distinct validation games, every game once in the final test, game counts,
and the final test's skill context — on the real ALFWorld data and through a real training run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from agent_system.environments import evaluation_tasks
from agent_system.environments.categories import ALFWORLD_TASK_TYPES
from agent_system.skills.library import GENERAL_SKILLS, load_skill_library
from tests.agent_system.environments.alfworld_fixtures import env_config
from tests.conftest import REPO_ROOT, trainer_config
from verl.trainer.main_ppo import run_ppo
from verl.trainer.ppo.evaluation import eval_num_envs, validation_tasks

PLACEHOLDERS = [{"data_source": "alfworld"}] * 128  # 128 validation slots, as prepare.py --val_data_size 128
MAPPING = REPO_ROOT / "skills/alfworld/skill_mapping.json"


def test_final_test_plays_all_140_valid_seen_games_and_validation_128_distinct_ones(alfworld_root, valid_seen_games):
    games = evaluation_tasks(env_config(alfworld_root), "test", PLACEHOLDERS)
    assert [task["gamefile"] for task in games] == [game.path for game in valid_seen_games] and len(games) == 140
    val = validation_tasks(evaluation_tasks(env_config(alfworld_root), "val", PLACEHOLDERS), 128, seed=0)
    assert len({task["gamefile"] for task in val}) == 128  # before: 90 distinct games, some played twice
    assert val == validation_tasks(games, 128, seed=0) != validation_tasks(games, 128, seed=1)
    assert eval_num_envs(140, 128) == 70 and eval_num_envs(128, 128) == 128 and eval_num_envs(12, 4) == 4
    pinned = [{"gamefile": valid_seen_games[5].path}, {"gamefile": valid_seen_games[2].path}] * 2
    assert evaluation_tasks(env_config(alfworld_root), "test", pinned) == pinned[:2]  # slots may name games


def test_out_of_distribution_test_plays_every_valid_unseen_game(small_alfworld_root):
    cfg = env_config(small_alfworld_root, alfworld={"eval_dataset": "eval_out_of_distribution"})
    games = evaluation_tasks(cfg, "test", PLACEHOLDERS)
    unseen = sorted(str(p) for p in (small_alfworld_root / "json_2.1.1" / "valid_unseen").rglob("game.tw-pddl"))
    assert [task["gamefile"] for task in games] == unseen and len(unseen) == 3


def test_more_validation_slots_than_games_play_each_game_once(small_alfworld_root, capsys):
    games = evaluation_tasks(env_config(small_alfworld_root), "val", PLACEHOLDERS)
    assert validation_tasks(games, 128, seed=0) == games and len(games) == 6
    assert "each validation plays all 6 once" in capsys.readouterr().out


def test_search_and_echo_evaluation_tasks_are_distinct():
    a = {"question": "Who wrote Hamlet?", "ground_truth": ["Shakespeare"], "data_source": "nq"}
    b = {"question": "Capital of Peru?", "ground_truth": ["Lima"], "data_source": "nq"}
    search = OmegaConf.create({"env_name": "search"})
    assert evaluation_tasks(search, "val", [a, b, dict(a, question=" Who wrote Hamlet? "), a]) == [a, b]
    echo = OmegaConf.create({"env_name": "echo", "echo": {"words": ["apple", "river", "apple"]}})
    assert evaluation_tasks(echo, "val", [{"data_source": "echo"}] * 8) == [{"word": "apple"}, {"word": "river"}]


def rollout_rows(out: Path, name: str) -> list[dict]:
    rows = []
    for path in sorted((out / "rollouts").glob(f"{name}_*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_training_run_validates_on_distinct_games_and_tests_every_game_once(
        ray_cluster, tiny_model_dir, small_alfworld_root, tmp_path):
    """The static-skill baseline on 6 games: 4 validation slots, the final test on all 6."""
    slots = tmp_path / "slots"
    subprocess.run([sys.executable, str(REPO_ROOT / "examples/data_preprocess/prepare.py"), "--env", "alfworld",
                    "--train_data_size", "4", "--val_data_size", "4", "--local_dir", str(slots)],
                   check=True, capture_output=True)
    out = tmp_path / "run"
    run_ppo(trainer_config([
        "env.env_name=alfworld/AlfredTWEnv", f"env.alfworld.data_path={small_alfworld_root}", "env.rollout.n=1",
        "env.max_steps=1", "env.history_length=1", "env.use_skill=True", f"env.skill_file={MAPPING.parent}/all_skills.md",
        f"actor_rollout_ref.model.path={tiny_model_dir}", f"data.train_files={slots}/text/train.parquet",
        f"data.val_files={slots}/text/test.parquet", "data.train_batch_size=1", "data.val_batch_size=6",
        "data.max_prompt_length=1024", "data.max_response_length=4", "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        "trainer.total_training_steps=1", "trainer.test_freq=1", "trainer.val_before_train=False",
        "trainer.test_after_train=True", "trainer.logger=[file]", "trainer.log_prompts=True",
        f"trainer.default_local_dir={out}",
    ]))
    step, final_test = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first_observations = lambda rows: [r["anchor"] for r in rows if r["step"] == 0]  # noqa: E731

    # validation: the 4 slots play 4 distinct games (a seeded draw without replacement; before: 2)
    validation = first_observations(rollout_rows(out, "val_step_1"))
    assert len(validation) == len(set(validation)) == 4 and step["val/num_games"] == 4
    assert sum(v for k, v in step.items() if k.endswith("_num_games") and k != "val/num_games") == 4

    # final test: all 6 games of the split exactly once per run, one of each task type
    for run in ("full_skill", "no_skill"):
        played = first_observations(rollout_rows(out, f"test_{run}"))
        assert len(played) == len(set(played)) == 6 and final_test[f"test/{run}/num_games"] == 6
        assert all(final_test[f"test/{run}/{task}_num_games"] == 1 for task in ALFWORLD_TASK_TYPES)

    # the static baseline's skills: the general skills plus the episode category's own file, not every file
    library = load_skill_library(MAPPING, ALFWORLD_TASK_TYPES)
    for row in rollout_rows(out, "test_full_skill") + rollout_rows(out, "val_step_1"):
        own = library.skill_for(row["category"])
        for name, skill_file in library.files.items():
            assert (skill_file.text in row["prompt"]) == (name in (GENERAL_SKILLS, own)), (name, row["category"])
