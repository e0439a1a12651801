"""benchmarks/internalization.py: from metrics.jsonl lines to per-method mean ± std, targets and files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import internalization as bench
from verl.trainer.config import compose_config
from verl.trainer.config.validate import config_problems


def metrics(without: list[float], test_no_skill: float, budgets: list[int]) -> list[dict]:
    """A run's metrics.jsonl: validations at steps 0, 2, 4 (with skills 0.75 at each), two training steps
    between validations, and the final test line."""
    rows = []
    for k, (wo, budget) in enumerate(zip(without, budgets)):
        if k:
            rows += [{"step": 2 * k - 1 + i, "episode/success_rate": 0.5, "rollout/context_tokens_per_step": 60.0 + budget,
                      "rollout/skill_tokens_per_step": float(budget), "timing_s/step": 10.0} for i in range(2)]
        rows.append({"step": 2 * k, "val/success_rate": 0.75, "val/curriculum/without_skill/success_rate": wo,
                     "val/curriculum/max_set": budget,
                     "val/curriculum/active_skills": ",".join(["general_skills", "pump", "lift", "oven", "mixer"][:budget])})
    rows.append({"step": 4, "test/no_skill/success_rate": test_no_skill, "test/full_skill/success_rate": 0.8})
    return rows


def run(method: str, seed: int, without: list[float], test: float, budgets: list[int]) -> dict:
    return {"method": method, "seed": seed, "seconds": 100.0, **bench.summarize(metrics(without, test, budgets))}


def test_runs_aggregate_into_mean_and_std_per_method_and_the_targets(tmp_path):
    runs = [run("skill0", 0, [0.0, 0.25, 0.5], 0.5, [5, 3, 0]), run("skill0", 1, [0.0, 0.5, 0.75], 0.7, [5, 3, 0]),
            run("grpo", 0, [0.0, 0.0, 0.0], 0.0, [0, 0, 0]), run("grpo", 1, [0.0, 0.0, 0.25], 0.2, [0, 0, 0]),
            run("static", 0, [0.0, 0.0, 0.0], 0.1, [5, 5, 5]), run("static", 1, [0.0, 0.0, 0.25], 0.1, [5, 5, 5])]
    assert runs[0]["validations"][1] == {"step": 2, "with_skill": 0.75, "without_skill": 0.25, "budget": 3,
                                         "active_skills": "general_skills,pump,lift"}
    assert runs[0]["context_tokens_per_step"] == pytest.approx((63 * 2 + 60 * 2) / 4)
    assert runs[0]["last_step_context_tokens"] == 60.0 and runs[4]["always_on"]
    assert [r["steps_without_skills"] for r in runs[::2]] == [2, 4, 0]  # skill0's steps 3-4, grpo's all, static's none

    result = bench.write_results(tmp_path, runs, [0, 1], [], 900.0)
    skill0 = result["methods"]["skill0"]
    assert skill0["steps"] == [0, 2, 4] and skill0["budget"] == [5, 3, 0]
    assert skill0["test_no_skill"] == {"mean": 0.6, "std": pytest.approx(0.1414, abs=1e-4), "n": 2}
    assert skill0["without_skill"][2]["mean"] == 0.625
    targets = result["targets"]
    assert targets["skill0_minus_grpo_zero_skill"] == 0.5 and targets["margin_target_met"]
    assert targets["margin_exceeds_seed_spread"]  # 0.5 > 0.1414 + 0.1414
    assert targets["skill0_zero_skill_share_of_static_with_skill"] == 0.8 and targets["share_target_met"]

    assert json.loads((tmp_path / "internalization.json").read_text())["methods"] == result["methods"]
    assert result["model"] == "smollm2-135m-instruct"
    assert (tmp_path / "internalization.png").read_bytes().startswith(b"\x89PNG")
    summary = (tmp_path / "internalization.md").read_text()
    assert "10.0 min of runs (15.0 min in this invocation" in summary  # six runs of 100 s
    assert "| skill0 | 60.0 ± 14.1 |" in summary and "SKILL0 − GRPO, zero-skill test success: 50.0 points" in summary
    assert "- skill0 seed 0: 50.0 %, 100 s, 2 of 4 steps without skills\n" in summary  # "always on" is static's
    assert "- static seed 0: 10.0 %, 100 s, 0 of 4 steps without skills, static skills always on: True\n" in summary


def test_the_results_name_the_model_the_runs_trained():
    assert bench.model_of([]) == "smollm2-135m-instruct"
    assert bench.model_of(["actor_rollout_ref.model.path=/models/qwen2.5-0.5b", "trainer.test_freq=4"]) == (
        "/models/qwen2.5-0.5b")


def test_a_run_without_its_final_test_is_an_error():
    with pytest.raises(ValueError, match="was the run complete"):
        bench.summarize(metrics([0.0, 0.0], 0.0, [5, 0])[:-1])


@pytest.mark.parametrize("method, schedule", [("skill0", [5, 3, 0]), ("grpo", [0]), ("static", [5])])
def test_every_method_runs_the_preset_with_only_its_schedule_changed(method, schedule):
    """What the CLI composes for one run: the shared preset and tasks; a user schedule reaches skill0 only."""
    slots = {split: Path(f"/slots/{split}.parquet") for split in ("train", "val", "test")}
    for user, expected in (([], schedule), (["env.curriculum_learning.max_set_schedule=[5,0]"],
                                            [5, 0] if method == "skill0" else schedule)):
        cfg = compose_config(bench.cli_overrides(method, 3, slots, Path("/runs/x"), ["trainer.test_freq=4", *user]),
                             config_name=bench.PRESET)
        assert list(cfg.env.curriculum_learning.max_set_schedule) == expected
        assert (cfg.env.env_name, cfg.trainer.seed, cfg.trainer.test_freq, cfg.data.val_files) == (
            "machines", 3, 4, "/slots/val.parquet")
        assert (cfg.actor_rollout_ref.actor.optim.lr, cfg.data.train_batch_size, cfg.env.rollout.n) == (2e-5, 4, 4)
        assert config_problems(cfg) == []


def test_resume_reuses_a_finished_run_of_the_same_command_only(tmp_path, monkeypatch):
    slots = {split: tmp_path / f"{split}.parquet" for split in ("train", "val", "test")}
    run_dir = tmp_path / "runs" / "grpo_seed0"
    steps2 = ["trainer.total_training_steps=2"]

    def finished_run() -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics([0.0, 0.25], 0.5, [0, 0])))
        overrides = bench.cli_overrides("grpo", 0, slots, run_dir, steps2)
        (run_dir / "run.json").write_text(json.dumps({"overrides": overrides, "seconds": 42.0}))

    def no_training(*args, **kwargs):
        raise AssertionError("resume trained a run that had finished")

    monkeypatch.setattr(bench.subprocess, "run", no_training)
    finished_run()
    reused = bench.run_once("grpo", 0, slots, tmp_path, steps2, resume=True)
    assert (reused["method"], reused["seconds"], reused["test_no_skill"]) == ("grpo", 42.0, 0.5)
    for other, resume in ((["trainer.total_training_steps=4"], True), ([*steps2, "env.machines.press_reward=1"], True),
                          (steps2, False)):  # another command, or no --resume: trained again
        finished_run()
        with pytest.raises(AssertionError, match="resume trained"):
            bench.run_once("grpo", 0, slots, tmp_path, other, resume=resume)
        assert not (run_dir / "run.json").exists()  # a rerun drops the old record before training
    finished_run()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics([0.0], 0.5, [0])[:-1]))
    with pytest.raises(AssertionError, match="resume trained"):  # a run without its final test is rerun
        bench.run_once("grpo", 0, slots, tmp_path, steps2, resume=True)
