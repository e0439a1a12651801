"""Parsing and validation of skill files and skill mappings (agent_system/skills/library.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_system.environments.categories import TASK_CATEGORIES
from agent_system.skills.library import (
    GENERAL_SKILLS,
    SkillValidationError,
    check_skill_folder,
    load_skill_file,
    load_skill_library,
)

GENERAL = "### GENERAL SKILLS ###\n- Read the task.\n- Act from the list.\n"
HEAT = "### TASK: heat ###\n- Heat it in the microwave.\n"
COOL = "### TASK: cool ###\n- Cool it in the fridge.\n"
ALFWORLD = TASK_CATEGORIES["alfworld"]


def write_folder(root: Path, files: dict[str, str | bytes], mapping: dict | str | None = None) -> Path:
    """A skill folder with the given files and mapping (default: general + heat + cool)."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if mapping is None:
        mapping = {
            "skill_files": {GENERAL_SKILLS: "general_skills.md", "heat": "heat.md", "cool": "cool.md"},
            "task_to_skill": {"pick_heat_then_place_in_recep": "heat", "pick_cool_then_place_in_recep": "cool"},
        }
    text = mapping if isinstance(mapping, str) else json.dumps(mapping, indent=2)
    (root / "skill_mapping.json").write_text(text)
    return root


def messages(folder: Path, categories=ALFWORLD) -> list[str]:
    library, issues = check_skill_folder(folder, categories)
    assert library is None and issues, "expected the folder to be rejected"
    return [str(issue) for issue in issues]


def file_messages(tmp_path: Path, content: str | bytes) -> list[str]:
    path = tmp_path / "skill.md"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SkillValidationError) as err:
        load_skill_file(path)
    return [str(issue) for issue in err.value.issues]


# --------------------------------------------------------------------------- valid input


def test_parses_sections_with_lines_and_canonical_text(tmp_path):
    path = tmp_path / "two.md"
    path.write_text("\n### GENERAL SKILLS ###\n- a\n\n- b\n\n\n###   TASK: heat   ###\n- c   \n")
    skill = load_skill_file(path, name="two")
    assert [(s.name, s.line) for s in skill.sections] == [("GENERAL SKILLS", 2), ("TASK: heat", 8)]
    assert skill.sections[0].body == "- a\n\n- b"
    assert skill.text == "### GENERAL SKILLS ###\n- a\n\n- b\n\n### TASK: heat ###\n- c"


def test_loads_folder_with_general_first_and_category_lookups(tmp_path):
    mapping = {
        "skill_files": {"heat": "heat.md", GENERAL_SKILLS: "general_skills.md", "cool": "sub/cool.md"},
        "task_to_skill": {"pick_heat_then_place_in_recep": "heat", "pick_cool_then_place_in_recep": "cool"},
    }
    folder = write_folder(tmp_path / "alf", {"general_skills.md": GENERAL, "heat.md": HEAT, "sub/cool.md": COOL}, mapping)
    library = load_skill_library(folder / "skill_mapping.json", ALFWORLD)
    assert library.names == (GENERAL_SKILLS, "heat", "cool")
    assert library.task_file_names == ("heat", "cool")
    assert library.skill_for("pick_cool_then_place_in_recep") == "cool"
    assert library.skill_for("look_at_obj_in_light") is None
    assert library.categories_of("heat") == ("pick_heat_then_place_in_recep",)
    assert library.files["cool"].text == COOL.strip()


def test_our_skill_folders_load():
    root = Path(__file__).resolve().parents[3] / "skills"
    for env in ("alfworld", "search", "machines"):
        library = load_skill_library(root / env, TASK_CATEGORIES[env])
        assert library.names[0] == GENERAL_SKILLS
        assert set(library.task_to_skill) == set(TASK_CATEGORIES[env])


# --------------------------------------------------------------------------- skill file errors


def test_no_sections(tmp_path):
    assert any("no sections found" in m for m in file_messages(tmp_path, ""))
    assert any("no sections found" in m for m in file_messages(tmp_path, "just some text\n"))


def test_empty_section(tmp_path):
    (msg,) = file_messages(tmp_path, "### GENERAL SKILLS ###\n- ok\n### TASK: heat ###\n\n   \n")
    assert "skill.md:3:" in msg and "section 'TASK: heat' is empty" in msg


def test_duplicate_section(tmp_path):
    (msg,) = file_messages(tmp_path, "### A ###\n- x\n### B ###\n- y\n### A ###\n- z\n")
    assert "skill.md:5:" in msg and "repeats the header of line 1" in msg


def test_text_before_first_header(tmp_path):
    (msg,) = file_messages(tmp_path, "\nintro line\n### A ###\n- x\n")
    assert "skill.md:2:" in msg and "text before the first" in msg


def test_malformed_header(tmp_path):
    (msg,) = file_messages(tmp_path, "### A ###\n- x\n### B\n- y\n")
    assert "skill.md:3:" in msg and "malformed section header '### B'" in msg


def test_non_utf8_bytes_name_the_line(tmp_path):
    (msg,) = file_messages(tmp_path, b"### A ###\n- caf\xe9\n")
    assert "skill.md:2:" in msg and "not valid UTF-8 (byte 0xe9)" in msg


# --------------------------------------------------------------------------- mapping errors


def test_bad_json_names_the_line(tmp_path):
    folder = write_folder(tmp_path / "alf", {}, '{\n  "skill_files": {,\n}')
    (msg,) = messages(folder)
    assert "skill_mapping.json:2:" in msg and "bad JSON" in msg


def test_duplicate_json_key(tmp_path):
    folder = write_folder(tmp_path / "alf", {}, '{"skill_files": {}, "skill_files": {}}')
    (msg,) = messages(folder)
    assert "duplicate key 'skill_files'" in msg


def test_mapping_shape(tmp_path):
    assert "must be a JSON object" in messages(write_folder(tmp_path / "a", {}, "[1, 2]"))[0]
    msgs = messages(write_folder(tmp_path / "b", {}, {"skill_files": {"x": 1}, "task_to_skills": {}}))
    assert any("unknown key 'task_to_skills'" in m for m in msgs)
    assert any("'skill_files' must be a JSON object of string names to strings" in m for m in msgs)
    assert any("'task_to_skill' must be a JSON object" in m for m in msgs)


def test_missing_general_skills(tmp_path):
    mapping = {"skill_files": {"heat": "heat.md"}, "task_to_skill": {"pick_heat_then_place_in_recep": "heat"}}
    (msg,) = messages(write_folder(tmp_path / "alf", {"heat.md": HEAT}, mapping))
    assert "skill_mapping.json:2:" in msg and "no 'general_skills' entry" in msg


def test_missing_file(tmp_path):
    (msg,) = messages(write_folder(tmp_path / "alf", {"general_skills.md": GENERAL, "heat.md": HEAT}))
    assert msg.endswith("cool.md: file not found; create it or fix the path that names it")


def test_unreadable_file(tmp_path):
    folder = write_folder(tmp_path / "alf", {"general_skills.md": GENERAL, "heat.md": HEAT, "cool.md/keep": ""})
    (msg,) = messages(folder)
    assert "cool.md: cannot read the file (Is a directory)" in msg


def test_paths_outside_the_folder(tmp_path):
    (tmp_path / "outside.md").write_text(COOL)
    mapping = {
        "skill_files": {GENERAL_SKILLS: "general_skills.md", "heat": str(tmp_path / "outside.md"), "cool": "../outside.md"},
        "task_to_skill": {"pick_heat_then_place_in_recep": "heat", "pick_cool_then_place_in_recep": "cool"},
    }
    msgs = messages(write_folder(tmp_path / "alf", {"general_skills.md": GENERAL}, mapping))
    assert any("skill_mapping.json:4:" in m and "is an absolute path" in m for m in msgs)
    assert any("skill_mapping.json:5:" in m and "points outside the skill folder" in m for m in msgs)


def test_unknown_category_and_bad_targets(tmp_path):
    mapping = {
        "skill_files": {GENERAL_SKILLS: "general_skills.md", "heat": "heat.md"},
        "task_to_skill": {"pick_heat_then_place_in_recep": "heat", "juggle": "heat",
                          "pick_cool_then_place_in_recep": "cool", "look_at_obj_in_light": GENERAL_SKILLS},
    }
    msgs = messages(write_folder(tmp_path / "alf", {"general_skills.md": GENERAL, "heat.md": HEAT}, mapping))
    assert any(":8:" in m and "unknown task category 'juggle'" in m and "pick_and_place" in m for m in msgs)
    assert any(":9:" in m and "maps to 'cool', which is not in 'skill_files'" in m for m in msgs)
    assert any(":10:" in m and "maps to 'general_skills', which is always included" in m for m in msgs)
    assert len(msgs) == 3
    # without a category list, only the mapping's own consistency is checked
    assert len(check_skill_folder(tmp_path / "alf")[1]) == 2


def test_unused_skill_file(tmp_path):
    mapping = {
        "skill_files": {GENERAL_SKILLS: "general_skills.md", "heat": "heat.md", "cool": "cool.md"},
        "task_to_skill": {"pick_heat_then_place_in_recep": "heat"},
    }
    (msg,) = messages(write_folder(tmp_path / "alf", {"general_skills.md": GENERAL, "heat.md": HEAT, "cool.md": COOL}, mapping))
    assert "skill_mapping.json:5:" in msg and "skill file 'cool' is not used by any task category" in msg


def test_section_names_unique_across_files(tmp_path):
    folder = write_folder(tmp_path / "alf", {"general_skills.md": GENERAL, "heat.md": HEAT, "cool.md": HEAT})
    (msg,) = messages(folder)
    assert "cool.md:1:" in msg and "section 'TASK: heat' also appears in heat.md" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    files = {"general_skills.md": "intro\n### GENERAL SKILLS ###\n- a\n", "heat.md": "### TASK: heat ###\n", "cool.md": b"\xff"}
    folder = write_folder(tmp_path / "alf", files)
    with pytest.raises(SkillValidationError) as err:
        load_skill_library(folder, ALFWORLD)
    text = str(err.value)
    assert text.startswith("3 skill problem(s):")
    assert "text before the first" in text and "is empty" in text and "not valid UTF-8" in text
