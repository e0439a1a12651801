"""Plots and a markdown summary of a skill-curriculum run, from its metrics file.

    python -m agent_system.skills.report path/to/metrics.jsonl --out report/

The metrics file has one JSON object per line with an integer ``step`` and any of the keys
``val/success_rate``, ``val/curriculum/{with_skill,without_skill}/<category>_success_rate``,
``val/curriculum/delta/<category>``, ``val/curriculum/skill_delta/<file>``,
``val/curriculum/active_skill_count``, ``val/curriculum/active_skills``, ``val/curriculum/max_set``,
``rollout/context_tokens_per_step`` and ``rollout/skill_tokens_per_step``. Written to ``--out``:
``success_by_category.png``, ``skill_delta.png``, ``active_skills.png``, ``context_tokens.png``
(each only when its metrics are present) and ``summary.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from verl.utils.fs import write_bytes_atomic, write_text_atomic

WITH = "val/curriculum/with_skill/"
WITHOUT = "val/curriculum/without_skill/"
DELTA = "val/curriculum/delta/"
SKILL_DELTA = "val/curriculum/skill_delta/"
SUCCESS = "val/success_rate"
SUCCESS_WITHOUT = WITHOUT + "success_rate"
ACTIVE_COUNT = "val/curriculum/active_skill_count"
ACTIVE_NAMES = "val/curriculum/active_skills"
MAX_SET = "val/curriculum/max_set"
CONTEXT_TOKENS = "rollout/context_tokens_per_step"
SKILL_TOKENS = "rollout/skill_tokens_per_step"
RATE_SUFFIX = "_success_rate"


class MetricsFileError(ValueError):
    """The metrics file is missing, empty or has a malformed line (named in the message)."""


@dataclass(frozen=True)
class Row:
    where: str  # "path:line", for error messages
    step: int
    values: dict[str, Any]


Series = list[tuple[int, float]]


def read_metrics(path: Path) -> list[Row]:
    """Parse the metrics file; every problem names the file and line."""
    if not path.is_file():
        raise MetricsFileError(f"metrics file {path} not found; pass the metrics.jsonl written by the training run")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                values = json.loads(raw)
            except json.JSONDecodeError as err:
                raise MetricsFileError(f"{path}:{number}: not valid JSON ({err.msg}); each line must be one JSON object") from err
            if not isinstance(values, dict):
                raise MetricsFileError(f"{path}:{number}: expected a JSON object per line, got {type(values).__name__}")
            step = values.get("step")
            if not isinstance(step, int) or isinstance(step, bool):
                raise MetricsFileError(f"{path}:{number}: needs an integer 'step' key, got {step!r}")
            rows.append(Row(f"{path}:{number}", step, values))
    if not rows:
        raise MetricsFileError(f"metrics file {path} is empty; it needs one JSON object per logged step")
    return rows


def series(rows: list[Row], key: str) -> Series:
    """(step, value) points of a numeric metric, sorted by step; non-numbers are reported by line."""
    points = []
    for row in rows:
        value = row.values.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise MetricsFileError(f"{row.where}: {key} must be a number, got {value!r}")
        points.append((row.step, float(value)))
    return sorted(points, key=lambda point: point[0])


def names_under(rows: list[Row], prefix: str, suffix: str = "") -> list[str]:
    """Sorted names ``x`` of the keys ``prefix + x + suffix`` present in any row."""
    names = {
        key[len(prefix): len(key) - len(suffix)]
        for row in rows
        for key in row.values
        if key.startswith(prefix) and key.endswith(suffix)
    }
    return sorted(names)


# --------------------------------------------------------------------------- plots


def _save(fig: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    write_bytes_atomic(path, buffer.getvalue())


def _plot(ax: Any, points: Series, **style: Any) -> None:
    ax.plot([s for s, _ in points], [v for _, v in points], marker="o", markersize=3, **style)


def _new_axes(title: str, ylabel: str) -> tuple[Figure, Any]:
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    ax.set_title(title)
    ax.set_xlabel("global step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def plot_success(rows: list[Row], path: Path) -> bool:
    categories = sorted(set(names_under(rows, WITH, RATE_SUFFIX)) | set(names_under(rows, WITHOUT, RATE_SUFFIX)))
    overall = series(rows, SUCCESS)
    if not categories and not overall:
        return False
    fig, ax = _new_axes("Validation success: with skills (solid) vs without (dashed)", "success rate")
    colors = [f"C{i % 10}" for i in range(len(categories))]
    for color, category in zip(colors, categories):
        _plot(ax, series(rows, f"{WITH}{category}{RATE_SUFFIX}"), color=color, label=category)
        _plot(ax, series(rows, f"{WITHOUT}{category}{RATE_SUFFIX}"), color=color, linestyle="--")
    if overall:
        _plot(ax, overall, color="black", linewidth=2, label=SUCCESS)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize="small", loc="best")
    _save(fig, path)
    return True


def plot_skill_delta(rows: list[Row], path: Path) -> bool:
    files = names_under(rows, SKILL_DELTA)
    if not files:
        return False
    fig, ax = _new_axes("Skill-file Δ (success with − without); files with Δ < 0 are pruned", "Δ")
    for name in files:
        _plot(ax, series(rows, SKILL_DELTA + name), label=name)
    ax.axhline(0.0, color="grey", linewidth=1)
    ax.legend(fontsize="small", loc="best")
    _save(fig, path)
    return True


def plot_active_skills(rows: list[Row], path: Path) -> bool:
    count, budget = series(rows, ACTIVE_COUNT), series(rows, MAX_SET)
    if not count and not budget:
        return False
    fig, ax = _new_axes("Active skill files against the budget M", "files")
    for points, label, style in ((budget, "budget M (max_set)", "--"), (count, "active files", "-")):
        if points:
            ax.step([s for s, _ in points], [v for _, v in points], where="post", linestyle=style, label=label)
    ax.legend(fontsize="small", loc="best")
    _save(fig, path)
    return True


def plot_context_tokens(rows: list[Row], path: Path) -> bool:
    context, skill = series(rows, CONTEXT_TOKENS), series(rows, SKILL_TOKENS)
    if not context and not skill:
        return False
    fig, ax = _new_axes("Prompt context per step", "tokens")
    if context:
        _plot(ax, context, label="context tokens / step")
    if skill:
        _plot(ax, skill, label="skill tokens / step")
    ax.legend(fontsize="small", loc="best")
    _save(fig, path)
    return True


PLOTS = {
    "success_by_category.png": plot_success,
    "skill_delta.png": plot_skill_delta,
    "active_skills.png": plot_active_skills,
    "context_tokens.png": plot_context_tokens,
}


# --------------------------------------------------------------------------- summary


def _fmt(value: float) -> str:
    """Up to three decimals, trailing zeros dropped: 0.25 -> '0.25', 1.0 -> '1'."""
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _trend(label: str, points: Series) -> str:
    (first_step, first), (last_step, last) = points[0], points[-1]
    best_step, best = max(points, key=lambda point: point[1])
    return (f"- {label}: {_fmt(first)} at step {first_step} → {_fmt(last)} at step {last_step} "
            f"(best {_fmt(best)} at step {best_step})")


def _change(label: str, points: Series) -> str:
    (first_step, first), (last_step, last) = points[0], points[-1]
    change = f", {100 * (last - first) / first:+.1f}%" if first else ""
    return f"- {label}: {_fmt(first)} at step {first_step} → {_fmt(last)} at step {last_step}{change}"


def _last_paired_table(rows: list[Row]) -> list[str]:
    categories = names_under(rows, WITH, RATE_SUFFIX)
    paired = [r for r in rows if any(f"{WITH}{c}{RATE_SUFFIX}" in r.values for c in categories)]
    if not paired:
        return []
    last = max(paired, key=lambda row: row.step)
    lines = [f"## Last paired validation (step {last.step})", "", "| category | with skills | without | Δ |",
             "|---|---|---|---|"]
    for category in categories:
        with_rate = last.values.get(f"{WITH}{category}{RATE_SUFFIX}")
        without_rate = last.values.get(f"{WITHOUT}{category}{RATE_SUFFIX}")
        if with_rate is None or without_rate is None:
            continue
        lines.append(f"| {category} | {_fmt(with_rate)} | {_fmt(without_rate)} | {_fmt(with_rate - without_rate)} |")
    return lines + [""]


def _curriculum_table(rows: list[Row]) -> list[str]:
    files = names_under(rows, SKILL_DELTA)
    decisions = [r for r in rows if ACTIVE_NAMES in r.values or MAX_SET in r.values]
    if not decisions:
        return []
    header = ["step", "budget M", "active skills", *(f"Δ {name}" for name in files)]
    lines = ["## Curriculum decisions", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(decisions, key=lambda r: r.step):
        deltas = [row.values.get(SKILL_DELTA + name) for name in files]
        cells = [str(row.step), str(row.values.get(MAX_SET, "")), str(row.values.get(ACTIVE_NAMES, "")) or "(none)",
                 *("" if d is None else _fmt(d) for d in deltas)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def summary_markdown(source: Path, rows: list[Row], plots: list[str]) -> str:
    steps = [row.step for row in rows]
    lines = ["# Skill curriculum report", "", f"Source: `{source}` ({len(rows)} lines, steps {min(steps)}–{max(steps)}).", ""]
    trends = [_trend(key, points) for key in (SUCCESS, SUCCESS_WITHOUT) if (points := series(rows, key))]
    tokens = [_change(label, points) for label, points in
              (("context tokens / step", series(rows, CONTEXT_TOKENS)), ("skill tokens / step", series(rows, SKILL_TOKENS)))
              if points]
    if trends:
        lines += ["## Validation success", "", *trends, ""]
    lines += _last_paired_table(rows)
    lines += _curriculum_table(rows)
    if tokens:
        lines += ["## Prompt context", "", *tokens, ""]
    lines += ["## Plots", ""]
    lines += [f"![{name}]({name})" for name in plots] or ["(no plottable metrics in this file)"]
    return "\n".join(lines) + "\n"


def write_report(metrics_path: Path, out_dir: Path) -> list[Path]:
    """Write the plots that have data and ``summary.md``; returns the written paths."""
    rows = read_metrics(metrics_path)
    written = [name for name, plot in PLOTS.items() if plot(rows, out_dir / name)]
    write_text_atomic(out_dir / "summary.md", summary_markdown(metrics_path, rows, written))
    return [out_dir / name for name in written] + [out_dir / "summary.md"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_system.skills.report", description=__doc__.split("\n")[0])
    parser.add_argument("metrics", type=Path, help="metrics.jsonl of a training run")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG plots and summary.md")
    args = parser.parse_args(argv)
    try:
        paths = write_report(args.metrics, args.out)
    except MetricsFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
