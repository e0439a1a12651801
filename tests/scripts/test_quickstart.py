"""The main job (scripts/quickstart.sh) with a tiny model: the SKILL0 curriculum end to end on ALFWorld.

One run of 6 steps with a validation at every step and schedule [3,1,0]: six validations split into three
phases, so budget 3 at g = 0-2, 1 at g = 3-4 and 0 at g = 5-6 (governing step 6). The run is killed after
its second validation and resumed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent_system.environments.categories import ALFWORLD_TASK_TYPES
from agent_system.skills.library import load_skill_library
from tests.conftest import REPO_ROOT

MAPPING = REPO_ROOT / "skills/alfworld/skill_mapping.json"


def command(model: str, out: Path, games: Path) -> list[str]:
    """The quickstart on ``games`` (a short data folder: the final test plays every game of the split)."""
    return ["bash", str(REPO_ROOT / "scripts/quickstart.sh"), f"actor_rollout_ref.model.path={model}",
            f"env.alfworld.data_path={games}",
            "env.curriculum_learning.enable=True", "env.curriculum_learning.max_set_schedule=[3,1,0]",
            "trainer.total_training_steps=6", "trainer.test_freq=1", "trainer.save_freq=1",
            f"trainer.default_local_dir={out}", "data.max_response_length=24", "env.max_steps=3",
            "trainer.test_after_train=True"]


def metrics_lines(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read_log(out: Path, name: str) -> list[dict]:
    rows = []
    for path in sorted((out / "rollouts").glob(f"{name}_*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines()]
    return rows


def test_quickstart_curriculum_withdraws_skills_and_resumes(tiny_model_dir, small_alfworld_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "SKILLZERO_CACHE": os.environ.get("SKILLZERO_CACHE", str(Path.home() / ".cache/skillzero"))}
    run = command(tiny_model_dir, out, small_alfworld_root)
    first = subprocess.Popen(run, cwd=tmp_path, env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill the first run (and its Ray cluster) once the second validation is logged
        deadline = time.time() + 900
        while not any(m["step"] == 1 for m in metrics_lines(out)):
            assert first.poll() is None and time.time() < deadline, "the first run ended early"
            time.sleep(1)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    resumed = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    resume_step = int(resumed.stdout.split("at global step ")[1].split()[0])
    assert resume_step >= 1

    metrics = metrics_lines(out)
    validations = {m["step"]: m for m in metrics if "val/curriculum/max_set" in m}
    assert sorted(validations) == [0, 1, 2, 3, 4, 5, 6] and [m["step"] for m in metrics] == [*range(7), 6]
    final_test = metrics[-1]  # trainer.test_after_train: all skills merged vs none, same games
    assert {"test/full_skill/success_rate", "test/no_skill/success_rate"} <= set(final_test)
    train = [m for m in metrics if "episode/success_rate" in m]
    assert len(train) == 6 and all(any(k.startswith("episode/pick_") or k.startswith("episode/look_at")
                                       for k in m) for m in train)  # per-task-type success keys
    budgets = {g: m["val/curriculum/max_set"] for g, m in validations.items()}
    assert budgets == {0: 3, 1: 3, 2: 3, 3: 1, 4: 1, 5: 0, 6: 0}
    for g, m in validations.items():
        active = [s for s in m["val/curriculum/active_skills"].split(",") if s]
        assert m["val/curriculum/active_skill_count"] == len(active) <= budgets[g]
        if budgets[g] == 0:
            assert active == []

    library = load_skill_library(MAPPING, ALFWORLD_TASK_TYPES)
    texts = {name: f.text for name, f in library.files.items()}
    # step 6 is governed by the zero budget: no skill text at all in its prompts
    zero_phase = read_log(out, "train_step_6")
    assert zero_phase and not any(t in row["prompt"] for row in zero_phase for t in texts.values())
    # the resumed run trains with the active set restored from the checkpoint it resumed from
    restored = validations[resume_step]["val/curriculum/active_skills"].split(",")
    for row in read_log(out, f"train_step_{resume_step + 1}"):
        for name, text in texts.items():
            expected = name in restored and (name == "general_skills" or library.skill_for(row["category"]) == name)
            assert (text in row["prompt"]) == expected, (name, row["category"])
    # with / without validations of one step played identical games, and differ only in skills
    with_skill, without = read_log(out, "val_step_3_with_skill"), read_log(out, "val_step_3_without_skill")
    first_obs = lambda rows: sorted((r["env"], r["anchor"]) for r in rows if r["step"] == 0)  # noqa: E731
    assert first_obs(with_skill) == first_obs(without) and first_obs(with_skill)
    assert any(texts["general_skills"] in r["prompt"] for r in with_skill)
    assert not any(texts["general_skills"] in r["prompt"] for r in without)

    # the report renders from this real run
    report = subprocess.run([sys.executable, "-m", "agent_system.skills.report", str(out / "metrics.jsonl"),
                             "--out", str(tmp_path / "report")], capture_output=True, text=True, cwd=REPO_ROOT)
    assert report.returncode == 0, report.stderr
    assert list((tmp_path / "report").glob("*.png")) and (tmp_path / "report" / "summary.md").exists()
