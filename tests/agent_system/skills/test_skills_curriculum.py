"""Phases, Δ, selection and the SkillCurriculum state machine (agent_system/skills/curriculum.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_system.environments.categories import TASK_CATEGORIES
from agent_system.skills.curriculum import (
    CurriculumConfigError,
    CurriculumSchedule,
    CurriculumUpdate,
    SkillCurriculum,
    category_deltas,
    file_deltas,
    select_active,
    validation_phase,
)
from agent_system.skills.library import GENERAL_SKILLS, load_skill_library

ALFWORLD_SKILLS = Path(__file__).resolve().parents[3] / "skills" / "alfworld"
PICK, PICK_TWO = "pick_and_place", "pick_two_obj_and_place"
LOOK, CLEAN, HEAT, COOL = (
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
)


@pytest.fixture(scope="module")
def library():
    return load_skill_library(ALFWORLD_SKILLS, TASK_CATEGORIES["alfworld"])


def make_curriculum(library, schedule=(6, 3, 0)) -> SkillCurriculum:
    return SkillCurriculum(library, CurriculumSchedule(schedule, total_steps=180, test_freq=10))


# --------------------------------------------------------------------------- phases


def test_reference_example_180_steps_every_10_with_6_3_0():
    schedule = CurriculumSchedule((6, 3, 0), total_steps=180, test_freq=10)
    budgets = {g: schedule.budget(g) for g in range(0, 181, 10)}
    assert budgets == {**{g: 6 for g in range(0, 61, 10)}, **{g: 3 for g in range(70, 121, 10)},
                       **{g: 0 for g in range(130, 181, 10)}}


def test_validation_before_training_uses_the_first_phase():
    # the reference formula ((g - 1) // test_freq) // per_phase gives -1 -> the last phase at g = 0
    assert validation_phase(0, test_freq=10, total_steps=180, n_phases=3) == 0
    assert validation_phase(1, test_freq=10, total_steps=180, n_phases=3) == 0
    assert validation_phase(10_000, test_freq=10, total_steps=180, n_phases=3) == 2


def test_phase_boundaries_with_other_frequencies():
    # V = 12 validations, 4 phases of 3: validations at 5,10,15 | 20,25,30 | ...
    phases = [validation_phase(g, 5, 60, 4) for g in (5, 15, 16, 20, 30, 31, 45, 46, 60)]
    assert phases == [0, 0, 1, 1, 1, 2, 2, 3, 3]


def test_schedule_that_does_not_divide_the_validations_is_a_config_error():
    with pytest.raises(CurriculumConfigError) as err:
        CurriculumSchedule((6, 3, 2, 0), total_steps=180, test_freq=10)
    text = str(err.value)
    for key in ("env.curriculum_learning.max_set_schedule", "trainer.total_training_steps=180", "trainer.test_freq=10"):
        assert key in text
    assert "18 validations" in text and "divides 18" in text
    with pytest.raises(CurriculumConfigError, match="the 0 validations"):
        validation_phase(5, test_freq=10, total_steps=5, n_phases=1)


def test_bad_schedules_and_steps():
    with pytest.raises(CurriculumConfigError, match="non-empty list of integers >= 0"):
        CurriculumSchedule((6, -1, 0), total_steps=180, test_freq=10)
    with pytest.raises(CurriculumConfigError, match="must all be positive"):
        CurriculumSchedule((6, 3, 0), total_steps=180, test_freq=0)
    with pytest.raises(ValueError, match="global_step must be >= 0"):
        validation_phase(-1, 10, 180, 3)


# --------------------------------------------------------------------------- Δ


def test_category_deltas_pair_the_two_runs_exactly():
    deltas = category_deltas({HEAT: 0.3, COOL: 0.5}, {HEAT: 0.1, COOL: 0.5})
    assert deltas == {COOL: 0.0, HEAT: 0.2}
    # 0.3 - 0.1 in floats is 0.19999999999999998; equal improvements must tie exactly
    assert category_deltas({HEAT: 0.3}, {HEAT: 0.1})[HEAT] == category_deltas({HEAT: 0.4}, {HEAT: 0.2})[HEAT]
    with pytest.raises(ValueError, match=r"only with skills: \['pick_cool_then_place_in_recep'\]"):
        category_deltas({HEAT: 0.3, COOL: 0.1}, {HEAT: 0.1})
    with pytest.raises(ValueError, match="not a success rate in"):
        category_deltas({HEAT: float("nan")}, {HEAT: 0.1})
    with pytest.raises(ValueError, match="not a success rate in"):
        category_deltas({HEAT: 0.5}, {HEAT: 1.5})


def test_file_delta_is_the_mean_of_its_measured_categories(library):
    deltas = file_deltas(library, {PICK: 0.4, PICK_TWO: -0.1, HEAT: -0.2, "unmapped_category": 0.9})
    assert deltas == {"pick_and_place": 0.15, "heat": -0.2}  # look/clean/cool unmeasured: no Δ
    assert file_deltas(library, {PICK_TWO: 0.3}) == {"pick_and_place": 0.3}


# --------------------------------------------------------------------------- selection


def test_selection_sorts_by_delta_then_name_and_keeps_zero():
    deltas = {"heat": 0.1, "cool": 0.1, "clean": 0.0, "look": 0.3, "pick": -0.05}
    assert select_active(deltas, 6) == (GENERAL_SKILLS, "look", "cool", "heat", "clean")
    assert select_active(deltas, 3) == (GENERAL_SKILLS, "look", "cool")


def test_selection_budgets_zero_one_and_all_negative():
    deltas = {"heat": 0.5, "cool": -0.1}
    assert select_active(deltas, 0) == ()
    assert select_active(deltas, 1) == (GENERAL_SKILLS,)
    assert select_active({"heat": -0.5, "cool": -0.1}, 6) == (GENERAL_SKILLS,)
    with pytest.raises(ValueError, match="budget must be >= 0"):
        select_active(deltas, -1)


# --------------------------------------------------------------------------- the curriculum


def rates(**by_category: float) -> dict[str, float]:
    names = {"pick": PICK, "pick_two": PICK_TWO, "look": LOOK, "clean": CLEAN, "heat": HEAT, "cool": COOL}
    return {names[k]: v for k, v in by_category.items()}


def test_initial_active_set_is_every_file(library):
    curriculum = make_curriculum(library)
    assert curriculum.active == library.names
    assert curriculum.context_fn()(HEAT) == f"{library.files[GENERAL_SKILLS].text}\n\n{library.files['heat'].text}\n\n"
    assert curriculum.metrics() == {
        "val/curriculum/active_skill_count": 6,
        "val/curriculum/active_skills": ",".join(library.names),
        "val/curriculum/max_set": 6,
    }


def test_a_run_prunes_brings_back_and_ends_with_no_skills(library):
    curriculum = make_curriculum(library)
    without = rates(pick=0.5, pick_two=0.5, look=0.5, clean=0.5, heat=0.5, cool=0.5)

    first = curriculum.update(0, rates(pick=0.6, pick_two=0.5, look=0.9, clean=0.4, heat=0.5, cool=0.7), without)
    assert first.budget == 6
    assert first.file_delta == {"pick_and_place": 0.05, "look_at_obj_in_light": 0.4, "clean": -0.1, "heat": 0.0, "cool": 0.2}
    assert first.active == (GENERAL_SKILLS, "look_at_obj_in_light", "cool", "pick_and_place", "heat")
    assert curriculum.context_fn()(CLEAN) == f"{library.files[GENERAL_SKILLS].text}\n\n"

    # clean's Δ is back to >= 0 and it fits in the budget again
    second = curriculum.update(60, rates(pick=0.5, pick_two=0.5, look=0.6, clean=0.5, heat=0.4, cool=0.5), without)
    assert second.active == (GENERAL_SKILLS, "look_at_obj_in_light", "clean", "cool", "pick_and_place")

    third = curriculum.update(70, rates(pick=0.9, pick_two=0.9, look=0.6, clean=0.7, heat=0.5, cool=0.5), without)
    assert third.budget == 3 and third.active == (GENERAL_SKILLS, "pick_and_place", "clean")

    last = curriculum.update(130, rates(pick=0.9, pick_two=0.9, look=0.6, clean=0.7, heat=0.5, cool=0.5), without)
    assert last.budget == 0 and last.active == ()
    assert curriculum.context_fn()(PICK) == ""
    assert [h.global_step for h in curriculum.history] == [0, 60, 70, 130]


def test_unmeasured_files_are_not_eligible_that_round(library):
    curriculum = make_curriculum(library)
    update = curriculum.update(0, rates(heat=0.4), rates(heat=0.2))
    assert update.active == (GENERAL_SKILLS, "heat")


def test_updates_must_not_go_back_in_time(library):
    curriculum = make_curriculum(library)
    curriculum.update(20, rates(heat=0.4), rates(heat=0.2))
    with pytest.raises(ValueError, match="comes after one at step 20"):
        curriculum.update(10, rates(heat=0.4), rates(heat=0.2))


def test_metrics_of_the_latest_update(library):
    curriculum = make_curriculum(library)
    curriculum.update(70, rates(pick=0.75, pick_two=0.25, heat=0.5), rates(pick=0.5, pick_two=0.5, heat=0.25))
    assert curriculum.metrics() == {
        f"val/curriculum/delta/{PICK}": 0.25,
        f"val/curriculum/delta/{PICK_TWO}": -0.25,
        f"val/curriculum/delta/{HEAT}": 0.25,
        f"val/curriculum/with_skill/{PICK}_success_rate": 0.75,
        f"val/curriculum/with_skill/{PICK_TWO}_success_rate": 0.25,
        f"val/curriculum/with_skill/{HEAT}_success_rate": 0.5,
        f"val/curriculum/without_skill/{PICK}_success_rate": 0.5,
        f"val/curriculum/without_skill/{PICK_TWO}_success_rate": 0.5,
        f"val/curriculum/without_skill/{HEAT}_success_rate": 0.25,
        "val/curriculum/skill_delta/pick_and_place": 0.0,
        "val/curriculum/skill_delta/heat": 0.25,
        "val/curriculum/active_skill_count": 3,
        "val/curriculum/active_skills": "general_skills,heat,pick_and_place",
        "val/curriculum/max_set": 3,
    }


def test_state_dict_round_trips_through_json(library):
    curriculum = make_curriculum(library)
    curriculum.update(0, rates(pick=0.6, heat=0.2, cool=0.9), rates(pick=0.5, heat=0.3, cool=0.4))
    curriculum.update(70, rates(pick=0.7, heat=0.4, cool=0.9), rates(pick=0.5, heat=0.3, cool=0.4))
    restored = make_curriculum(library)
    restored.load_state_dict(json.loads(json.dumps(curriculum.state_dict())))
    assert restored.active == curriculum.active == (GENERAL_SKILLS, "cool", "pick_and_place")
    assert restored.history == curriculum.history
    assert restored.metrics() == curriculum.metrics()
    assert restored.context_fn() == curriculum.context_fn()


def test_load_state_dict_validates_against_the_mapping(library):
    curriculum = make_curriculum(library)
    state = curriculum.state_dict()
    with pytest.raises(ValueError, match=r"\['bake'\] are not in .*skill mapping the checkpoint was trained with"):
        curriculum.load_state_dict({**state, "active": [GENERAL_SKILLS, "bake"]})
    bad_history = CurriculumUpdate(10, 6, (GENERAL_SKILLS,), file_delta={"bake": 0.1}).to_dict()
    with pytest.raises(ValueError, match=r"\['bake'\]"):
        curriculum.load_state_dict({**state, "history": [bad_history]})
    with pytest.raises(ValueError, match="must contain 'general_skills'"):
        curriculum.load_state_dict({**state, "active": ["heat"]})
    with pytest.raises(ValueError, match="the dict state_dict"):
        curriculum.load_state_dict({"active": []})
    with pytest.raises(ValueError, match="history entry needs exactly the keys"):
        curriculum.load_state_dict({**state, "history": [{"global_step": 1}]})
    assert curriculum.active == library.names  # nothing changed by the failed loads


def test_from_config_builds_schedule_and_library():
    curriculum = SkillCurriculum.from_config(
        ALFWORLD_SKILLS / "skill_mapping.json", [6, 3, 0], total_steps=180, test_freq=10,
        categories=TASK_CATEGORIES["alfworld"])
    assert curriculum.budget(70) == 3
    with pytest.raises(CurriculumConfigError):
        SkillCurriculum.from_config(ALFWORLD_SKILLS, [6, 3, 0], total_steps=100, test_freq=10)
