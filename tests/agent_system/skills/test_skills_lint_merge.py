"""The lint and merge CLIs, and the skill folders we ship (skills/alfworld, skills/search)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from agent_system.skills import lint, merge
from agent_system.skills.library import GENERAL_SKILLS, load_skill_file, load_skill_library

SKILLS = Path(__file__).resolve().parents[3] / "skills"


def count_rows(output: str) -> dict[str, int]:
    return {m["label"].strip(): int(m["n"]) for m in re.finditer(r"^  (?P<label>.+?)\s+(?P<n>\d+)$", output, re.M)}


@pytest.mark.parametrize("env", ["alfworld", "search"])
def test_our_folders_pass_lint_with_word_counts(env, capsys):
    assert lint.main([str(SKILLS / env)]) == 0
    out = capsys.readouterr().out
    assert f"{SKILLS / env}: OK" in out and f"env {env}" in out and "counts in words" in out
    rows = count_rows(out)
    general = load_skill_library(SKILLS / env).files[GENERAL_SKILLS].text
    assert rows["file general_skills"] == len(general.split())
    merged = rows["context all files (skill_scope=all_files)"]
    assert merged > max(v for k, v in rows.items() if k.startswith("context ") and "all files" not in k)


@pytest.mark.parametrize("env", ["alfworld", "search"])
def test_committed_merged_files_are_current(env, capsys):
    assert merge.main([str(SKILLS / env), "--check"]) == 0
    merged = load_skill_file(SKILLS / env / merge.MERGED_FILE_NAME)
    library = load_skill_library(SKILLS / env)
    assert merged.sections[0].name == "GENERAL SKILLS"
    assert [s.name for s in merged.sections] == [s.name for f in library.files.values() for s in f.sections]


@pytest.fixture()
def folder_copy(tmp_path):
    """A writable copy of skills/alfworld named like its environment."""
    return Path(shutil.copytree(SKILLS / "alfworld", tmp_path / "alfworld"))


def test_merge_writes_and_check_detects_stale_files(folder_copy, tmp_path, capsys):
    out = tmp_path / "merged.md"
    assert merge.main([str(folder_copy), "--out", str(out)]) == 0
    assert out.read_text() == (SKILLS / "alfworld" / merge.MERGED_FILE_NAME).read_text()
    (folder_copy / "heat.md").write_text("### TASK: heat ###\n- Use the microwave.\n")
    assert merge.main([str(folder_copy), "--check"]) == 1
    assert "differs from the merge of skill_mapping.json" in capsys.readouterr().err


def test_lint_reports_a_stale_merged_file(folder_copy, capsys):
    (folder_copy / "cool.md").write_text("### TASK: cool ###\n- Use the fridge.\n")
    assert lint.main([str(folder_copy)]) == 1
    assert "all_skills.md: out of date" in capsys.readouterr().out
    assert merge.main([str(folder_copy)]) == 0
    assert lint.main([str(folder_copy)]) == 0


def test_lint_prints_every_problem_and_fails(folder_copy, capsys):
    (folder_copy / "heat.md").write_text("intro\n### TASK: heat ###\n- x\n")
    (folder_copy / "clean.md").write_text("### TASK: clean ###\n\n")
    mapping = json.loads((folder_copy / "skill_mapping.json").read_text())
    mapping["task_to_skill"]["juggle"] = "cool"
    (folder_copy / "skill_mapping.json").write_text(json.dumps(mapping, indent=2))
    assert lint.main([str(folder_copy)]) == 1
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 3
    assert any("heat.md:1: text before the first" in line for line in lines)
    assert any("clean.md:1: section 'TASK: clean' is empty" in line for line in lines)
    assert any("unknown task category 'juggle'" in line for line in lines)
    assert "3 problem(s)" in captured.err


def test_lint_env_comes_from_the_flag_or_the_folder_name(tmp_path, capsys):
    renamed = Path(shutil.copytree(SKILLS / "search", tmp_path / "my_skills"))
    with pytest.raises(SystemExit) as err:
        lint.main([str(renamed)])
    assert err.value.code == 2
    assert "cannot tell the environment from the folder name 'my_skills'; pass --env" in capsys.readouterr().err
    assert lint.main([str(renamed), "--env", "search"]) == 0
    assert lint.main([str(renamed), "--env", "alfworld"]) == 1  # search categories are unknown to alfworld
    assert "unknown task category 'direct_retrieval'" in capsys.readouterr().out


def test_lint_counts_tokens_with_a_local_tokenizer(tmp_path, capsys):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    library = load_skill_library(SKILLS / "search")
    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()  # splits punctuation off words
    tokenizer.train_from_iterator([f.text for f in library.files.values()],
                                  trainers.WordLevelTrainer(special_tokens=["[UNK]"]))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(tmp_path / "tok")

    assert lint.main([str(SKILLS / "search"), "--tokenizer", str(tmp_path / "tok")]) == 0
    rows = count_rows(capsys.readouterr().out)
    general = library.files[GENERAL_SKILLS].text
    assert rows["file general_skills"] == len(tokenizer.encode(general).ids) != len(general.split())

    with pytest.raises(SystemExit):
        lint.main([str(SKILLS / "search"), "--tokenizer", str(tmp_path / "missing")])
    assert "cannot load a tokenizer from" in capsys.readouterr().err
