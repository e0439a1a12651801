"""Skill context text for prompts (agent_system/skills/context.py)."""

from __future__ import annotations

import json
import pickle

import pytest

from agent_system.skills.context import (
    active_context_fn,
    full_context_fn,
    merged_text,
    sectioned_context_fn,
    static_context_fn,
)
from agent_system.skills.library import GENERAL_SKILLS, load_skill_library

GENERAL = "### GENERAL SKILLS ###\n- Read the task."
HEAT = "### TASK: heat ###\n- Use the microwave."
COOL = "### TASK: cool ###\n- Use the fridge.\n\n### COOL CHECKS ###\n- Examine it."
HEAT_CATEGORY, COOL_CATEGORY = "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep"


@pytest.fixture()
def library(tmp_path):
    for name, text in {"general_skills.md": GENERAL, "heat.md": HEAT, "cool.md": COOL}.items():
        (tmp_path / name).write_text(f"\n{text}\n\n")
    mapping = {
        "skill_files": {GENERAL_SKILLS: "general_skills.md", "heat": "heat.md", "cool": "cool.md"},
        "task_to_skill": {HEAT_CATEGORY: "heat", COOL_CATEGORY: "cool"},
    }
    (tmp_path / "skill_mapping.json").write_text(json.dumps(mapping))
    return load_skill_library(tmp_path)


def test_general_then_own_file_with_blank_lines(library):
    fn = active_context_fn(library, library.names)
    assert fn(HEAT_CATEGORY) == f"{GENERAL}\n\n{HEAT}\n\n"
    assert fn(COOL_CATEGORY) == f"{GENERAL}\n\n{COOL}\n\n"


def test_pruned_or_unmapped_category_gets_general_only(library):
    fn = active_context_fn(library, [GENERAL_SKILLS, "cool"])
    assert fn(HEAT_CATEGORY) == f"{GENERAL}\n\n"
    assert fn("look_at_obj_in_light") == f"{GENERAL}\n\n"


def test_empty_active_set_gives_empty_context(library):
    assert active_context_fn(library, [])(HEAT_CATEGORY) == ""


def test_rejects_bad_active_sets(library):
    with pytest.raises(ValueError, match="must contain 'general_skills'"):
        active_context_fn(library, ["heat"])
    with pytest.raises(ValueError, match=r"active skills \['bake'\] are not in"):
        active_context_fn(library, [GENERAL_SKILLS, "bake"])


def test_full_context_merges_all_files_general_first(library):
    expected = f"{GENERAL}\n\n{HEAT}\n\n{COOL}\n\n"
    assert merged_text(library) + "\n\n" == expected
    fn = full_context_fn(library)
    assert fn(HEAT_CATEGORY) == fn("anything") == expected


def test_static_context_is_one_file_for_every_category(tmp_path):
    path = tmp_path / "mine.md"
    path.write_text(f"{HEAT}\n\n\n{COOL}\n")
    fn = static_context_fn(path)
    assert fn(HEAT_CATEGORY) == fn(COOL_CATEGORY) == f"{HEAT}\n\n{COOL}\n\n"


def test_sectioned_context_gives_general_plus_the_category_sections_of_one_file(library, tmp_path):
    merged = tmp_path / "all_skills.md"
    merged.write_text(merged_text(library))
    fn = sectioned_context_fn(merged, library)
    every_file = active_context_fn(library, library.names)
    for category in (HEAT_CATEGORY, COOL_CATEGORY, "look_at_obj_in_light"):
        assert fn(category) == every_file(category)
    assert fn(HEAT_CATEGORY) == f"{GENERAL}\n\n{HEAT}\n\n" and fn("look_at_obj_in_light") == f"{GENERAL}\n\n"
    edited = tmp_path / "edited.md"  # the text comes from the file, the section -> category link from the mapping
    edited.write_text("### TASK: heat ###\n- Heat it twice.\n\n### GENERAL SKILLS ###\n- Look first.\n")
    assert sectioned_context_fn(edited, library)(HEAT_CATEGORY) == (
        "### GENERAL SKILLS ###\n- Look first.\n\n### TASK: heat ###\n- Heat it twice.\n\n")
    assert pickle.loads(pickle.dumps(fn)) == fn


def test_sectioned_context_rejects_sections_no_category_would_get(library, tmp_path):
    stray = tmp_path / "stray.md"
    stray.write_text(f"{GENERAL}\n\n### TASK: bake ###\n- Use the oven.\n")
    with pytest.raises(ValueError, match=r"\['TASK: bake'\] are in no file.*env.skill_scope=all_files"):
        sectioned_context_fn(stray, library)


def test_context_functions_pickle_and_compare_by_value(library):
    fn = active_context_fn(library, [GENERAL_SKILLS, "heat"])
    clone = pickle.loads(pickle.dumps(fn))
    assert clone(HEAT_CATEGORY) == fn(HEAT_CATEGORY)
    assert pickle.loads(pickle.dumps(full_context_fn(library))) == full_context_fn(library)
