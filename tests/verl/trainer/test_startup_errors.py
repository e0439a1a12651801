"""Catalogue of start-up errors (issue 15, item 7): each bad config or file stops the run before any work.

Every case builds the run exactly as ``python -m verl.trainer.main_ppo`` does (``Run(cfg)``) with a trip
wire on ``ray.init``: reaching it would mean workers start, so every case must fail earlier, with an error
``main`` reports without a traceback (``STARTUP_ERRORS``), naming the key or file and the fix. Unknown keys
and wrong types are caught by Hydra while composing; one case goes through the real CLI end to end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import ray
from hydra.errors import ConfigCompositionException

from tests.conftest import REPO_ROOT, echo_overrides, trainer_config
from verl.trainer import main_ppo

SKILLS = REPO_ROOT / "skills" / "alfworld"


@pytest.fixture
def no_work(monkeypatch):
    """Fail loudly if start-up gets as far as starting Ray (i.e. workers would be launched)."""
    def tripwire(*args, **kwargs):
        raise AssertionError("start-up reached ray.init: the bad input was not caught before work began")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", tripwire)


def no_chat_template_model(model: str, tmp: Path) -> str:
    out = tmp / "no-chat-template"
    shutil.copytree(model, out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    (out / "chat_template.jinja").unlink(missing_ok=True)
    return str(out)


def escaping_skill_mapping(tmp: Path) -> str:
    folder = tmp / "skills"
    shutil.copytree(SKILLS, folder)
    mapping = json.loads((folder / "skill_mapping.json").read_text())
    task_file = next(name for name in mapping["skill_files"] if name != "general")
    mapping["skill_files"][task_file] = "../../outside.md"
    (folder / "skill_mapping.json").write_text(json.dumps(mapping, indent=2))
    return str(folder / "skill_mapping.json")


def parquet(tmp: Path, name: str, frame: pd.DataFrame | None = None, raw: bytes | None = None) -> str:
    path = tmp / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        frame.to_parquet(path)
    return str(path)


def curriculum(mapping: str, alfworld_root: Path, **extra) -> dict:
    return {"env.env_name": "alfworld/AlfredTWEnv", "env.alfworld.data_path": str(alfworld_root),
            "env.curriculum_learning.enable": True, "env.curriculum_learning.skill_mapping_file": mapping,
            "trainer.test_freq": 1, "trainer.total_training_steps": 3,
            "env.curriculum_learning.max_set_schedule": "[6,3,0]", **extra}


# name -> (overrides built from (model, tmp dir, alfworld root), substrings the message must hold)
CATALOGUE = {
    "unknown key added with +": (
        lambda m, t, a: {"+trainer.total_training_step": 3},
        ["trainer.total_training_step", "did you mean trainer.total_training_steps"]),
    "bad choice": (
        lambda m, t, a: {"algorithm.adv_estimator": "ppo2"}, ["algorithm.adv_estimator", "must be one of"]),
    "impossible schedule": (
        lambda m, t, a: curriculum(str(SKILLS / "skill_mapping.json"), a, **{
            "trainer.total_training_steps": 2, "env.curriculum_learning.max_set_schedule": "[6,3,0]"}),
        ["max_set_schedule"]),
    "missing model": (
        lambda m, t, a: {"actor_rollout_ref.model.path": str(t / "no-model")},
        ["actor_rollout_ref.model.path", "Fix:"]),
    "tokenizer without chat template": (
        lambda m, t, a: {"actor_rollout_ref.model.path": no_chat_template_model(m, t)},
        ["no chat template", "tokenizer_config.json", "Fix:"]),
    "missing data file": (
        lambda m, t, a: {"data.val_files": str(t / "none.parquet")}, ["data.val_files", "prepare.py"]),
    "malformed parquet": (
        lambda m, t, a: {"data.train_files": parquet(t, "bad.parquet", raw=b"PAR1 but not parquet")},
        ["data.train_files", "bad.parquet", "not a readable parquet file", "Fix:"]),
    "env_kwargs of the wrong type": (
        lambda m, t, a: {"data.train_files": parquet(t, "ints.parquet", pd.DataFrame({"env_kwargs": [1, 2]}))},
        ["data.train_files", "ints.parquet", "row 0", "env_kwargs must be a dict", "Fix:"]),
    "parquet without rows": (
        lambda m, t, a: {"data.train_files": parquet(t, "empty.parquet", pd.DataFrame({"env_kwargs": []}))},
        ["data.train_files", "hold no rows", "Fix:"]),
    "fewer slots than the batch": (
        lambda m, t, a: {"data.train_batch_size": 1000}, ["data.train_batch_size=1000", "lower"]),
    "missing skill file": (
        lambda m, t, a: {"env.use_skill": True, "env.skill_file": str(t / "none.md")},
        ["env.skill_file", "existing skill file"]),
    "missing skill mapping": (
        lambda m, t, a: curriculum(str(t / "skill_mapping.json"), a),
        ["env.curriculum_learning.skill_mapping_file", "existing skill_mapping.json"]),
    "skill mapping pointing outside its folder": (
        lambda m, t, a: curriculum(escaping_skill_mapping(t), a),
        ["skill_mapping.json", "../../outside.md", "points outside the skill folder"]),
    "missing ALFWorld games": (
        lambda m, t, a: {"env.env_name": "alfworld/AlfredTWEnv", "env.alfworld.data_path": str(t / "none")},
        ["ALFWorld games folder", "alfworld-download"]),
    "resume from a folder that is no checkpoint": (
        lambda m, t, a: {"trainer.resume_mode": "resume_path", "trainer.resume_from_path": str(t / "global_step_3")},
        ["trainer.resume_from_path", "global_step_N"]),
}


@pytest.mark.parametrize("case", list(CATALOGUE))
def test_startup_error_names_the_problem_and_stops_before_work(case, no_work, tiny_model_dir, echo_slots,
                                                               alfworld_root, tmp_path):
    make, expected = CATALOGUE[case]
    out = tmp_path / "run"
    extra = {k.replace(".", "__"): v for k, v in make(tiny_model_dir, tmp_path, alfworld_root).items()}
    cfg = trainer_config(echo_overrides(tiny_model_dir, echo_slots, out, **extra))
    with pytest.raises(main_ppo.STARTUP_ERRORS) as err:
        main_ppo.Run(cfg)
    for text in expected:
        assert text in str(err.value), (case, str(err.value))
    assert not out.exists(), "nothing may be written before start-up succeeds"


@pytest.mark.parametrize("override, key", [
    ("trainer.total_training_step=3", "trainer.total_training_step"),
    ("trainer.test_freq=ten", "trainer.test_freq"),
    ("env.rollout=3", "env.rollout"),
])
def test_unknown_keys_and_wrong_types_are_rejected_while_composing(override, key):
    with pytest.raises(ConfigCompositionException) as err:
        trainer_config([override])
    assert key in str(err.value) + str(err.value.__cause__)


def test_cli_reports_a_malformed_parquet_without_traceback(tiny_model_dir, echo_slots, tmp_path):
    bad = parquet(tmp_path, "bad.parquet", raw=b"\x00" * 64)
    args = echo_overrides(tiny_model_dir, echo_slots, tmp_path / "run", data__train_files=bad)
    proc = subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "SkillZero could not start: data.train_files:" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()
