"""The skill context of the static baseline and of the final test's full-skill run (env.skill_scope)."""

from __future__ import annotations

import shutil

import pytest

from agent_system.environments.categories import ALFWORLD_TASK_TYPES
from agent_system.skills.library import GENERAL_SKILLS, load_skill_library
from tests.conftest import REPO_ROOT, trainer_config
from verl.trainer.config.validate import ConfigError
from verl.trainer.ppo.skill_schedule import build_skill_schedule

SKILLS = REPO_ROOT / "skills/alfworld"
HEAT, COOL = "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep"


@pytest.fixture(scope="module")
def library():
    return load_skill_library(SKILLS, ALFWORLD_TASK_TYPES)


def general_plus(library, name: str) -> str:
    return f"{library.files[GENERAL_SKILLS].text}\n\n{library.files[name].text}\n\n"


def test_static_baseline_gives_general_skills_plus_the_categorys_file(library):
    schedule = build_skill_schedule(trainer_config(["env.use_skill=True", f"env.skill_file={SKILLS}/all_skills.md"]), 10)
    assert schedule.context(HEAT) == general_plus(library, "heat")
    assert schedule.context(COOL) == general_plus(library, "cool")
    assert library.files["cool"].text not in schedule.context(HEAT)


def test_static_baseline_all_files_is_an_explicit_option(library):
    schedule = build_skill_schedule(trainer_config(["env.use_skill=True", f"env.skill_file={SKILLS}/all_skills.md",
                                                    "env.skill_scope=all_files"]), 10)
    assert schedule.context(HEAT) == schedule.context(COOL) == (SKILLS / "all_skills.md").read_text().strip() + "\n\n"


def test_static_baseline_without_a_mapping_stops_with_the_fix(tmp_path):
    shutil.copy(SKILLS / "all_skills.md", tmp_path / "mine.md")
    with pytest.raises(ConfigError, match="skill_mapping.json.*env.skill_scope=all_files"):
        build_skill_schedule(trainer_config(["env.use_skill=True", f"env.skill_file={tmp_path}/mine.md"]), 10)
    schedule = build_skill_schedule(trainer_config([  # the mapping may also be named explicitly
        "env.use_skill=True", f"env.skill_file={tmp_path}/mine.md",
        f"env.curriculum_learning.skill_mapping_file={SKILLS}/skill_mapping.json"]), 10)
    assert schedule.context(HEAT).startswith("### GENERAL SKILLS ###")


@pytest.mark.parametrize("scope", ["category", "all_files"])
def test_final_test_full_skill_context_follows_the_scope(library, scope):
    cfg = trainer_config(["env.curriculum_learning.enable=True", f"env.curriculum_learning.skill_mapping_file="
                          f"{SKILLS}/skill_mapping.json", "env.curriculum_learning.max_set_schedule=[2,0]",
                          "trainer.test_freq=5", f"env.skill_scope={scope}"])
    full = build_skill_schedule(cfg, 10).full_skill
    if scope == "category":
        assert full(HEAT) == general_plus(library, "heat") and full(COOL) == general_plus(library, "cool")
    else:
        assert full(HEAT) == full(COOL) and all(f.text in full(HEAT) for f in library.files.values())
