"""The curriculum report CLI (agent_system/skills/report.py) on a synthetic metrics file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_system.skills import report
from agent_system.skills.curriculum import CurriculumSchedule, SkillCurriculum
from agent_system.skills.library import load_skill_library

SEARCH_SKILLS = Path(__file__).resolve().parents[3] / "skills" / "search"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def synthetic_run(path: Path) -> None:
    """Metrics of a 60-step run validated every 10 steps with schedule [5, 3, 0]."""
    curriculum = SkillCurriculum(load_skill_library(SEARCH_SKILLS), CurriculumSchedule((5, 3, 0), 60, 10))
    lines = []
    for step in range(0, 61):
        if step > 0:
            skill_tokens = 240 - 4 * step  # skills shrink as the curriculum withdraws them
            lines.append({"step": step, "rollout/context_tokens_per_step": 600 - 4 * step,
                          "rollout/skill_tokens_per_step": skill_tokens, "actor/lr": 1e-6})
        if step % 10 == 0:
            progress = step / 60
            with_rates = {"direct_retrieval": 0.3 + 0.2 * progress, "compare": 0.4, "multi_hop_reasoning": 0.25}
            without = {"direct_retrieval": 0.2 + 0.3 * progress, "compare": 0.45, "multi_hop_reasoning": 0.1 + 0.2 * progress}
            curriculum.update(step, with_rates, without)
            lines.append({"step": step, "val/success_rate": round(0.2 + 0.5 * progress, 4),
                          "val/curriculum/without_skill/success_rate": round(0.1 + 0.4 * progress, 4),
                          **curriculum.metrics()})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_report_writes_plots_and_a_summary_with_real_numbers(tmp_path, capsys):
    metrics = tmp_path / "metrics.jsonl"
    synthetic_run(metrics)
    assert report.main([str(metrics), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    for name in ("success_by_category.png", "skill_delta.png", "active_skills.png", "context_tokens.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG_MAGIC), name
        assert f"wrote {tmp_path / 'out' / name}" in printed
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "steps 0–60" in summary
    assert "- val/success_rate: 0.2 at step 0 → 0.7 at step 60 (best 0.7 at step 60)" in summary
    assert "- val/curriculum/without_skill/success_rate: 0.1 at step 0 → 0.5 at step 60 (best 0.5" in summary
    # step 60: with 0.5 / without 0.5 for direct retrieval; 0.25 vs 0.3 for multi-hop
    assert "## Last paired validation (step 60)" in summary
    assert "| direct_retrieval | 0.5 | 0.5 | 0 |" in summary
    assert "| multi_hop_reasoning | 0.25 | 0.3 | -0.05 |" in summary
    assert "| 0 | 5 | general_skills,multi_hop_reasoning,direct_retrieval |" in summary
    assert "| 60 | 0 | (none) |" in summary
    assert "- context tokens / step: 596 at step 1 → 360 at step 60, -39.6%" in summary
    assert "![skill_delta.png](skill_delta.png)" in summary


def test_partial_metrics_give_only_the_plots_they_support(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 0, "val/success_rate": 0.1}\n\n{"step": 10, "val/success_rate": 0.3}\n')
    paths = report.write_report(metrics, tmp_path / "out")
    assert [p.name for p in paths] == ["success_by_category.png", "summary.md"]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "0.1 at step 0 → 0.3 at step 10" in summary and "Curriculum decisions" not in summary


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("\n\n", "is empty"),
        ('{"step": 1}\n{"step": 2}\n{"step": 3,\n', "metrics.jsonl:3: not valid JSON"),
        ('{"step": 1}\n[1, 2]\n', "metrics.jsonl:2: expected a JSON object"),
        ('{"val/success_rate": 0.5}\n', "metrics.jsonl:1: needs an integer 'step' key"),
        ('{"step": 1, "val/success_rate": "high"}\n', "metrics.jsonl:1: val/success_rate must be a number"),
    ],
)
def test_bad_metrics_files_fail_with_the_line(tmp_path, capsys, content, message):
    metrics = tmp_path / "metrics.jsonl"
    if content is not None:
        metrics.write_text(content)
    assert report.main([str(metrics), "--out", str(tmp_path / "out")]) == 1
    assert message in capsys.readouterr().err
