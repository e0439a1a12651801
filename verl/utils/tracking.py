"""Metric loggers selected by ``trainer.logger``: console, file (JSON lines), tensorboard, wandb.

``file`` appends one JSON object per step (with a ``step`` key) to ``<default_local_dir>/metrics.jsonl``.
The file always describes exactly one run history and nothing in it is lost:

- on resume from step S, lines beyond S (written after that checkpoint) are dropped first, the only
  way lines ever leave the file; a run killed after saving step S but before logging its line gets the
  line back from the checkpoint (``trainer_state.json`` holds the step's metrics row, all but the save's
  own timing);
- a fresh start (no checkpoint resumed) into a folder whose ``metrics.jsonl`` holds lines moves that file
  aside to ``metrics.<UTC time of its last write>.jsonl`` and starts a new one.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from verl.utils.fs import write_text_atomic

BACKENDS = ("console", "file", "tensorboard", "wandb")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        return _jsonable(v.item())
    return v


def jsonable_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The values of a metrics row as JSON values (numpy/torch scalars unwrapped, NaN/inf -> null)."""
    return {k: _jsonable(v) for k, v in metrics.items()}


def _read_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(line, parsed object) for each line of a metrics file; a torn last line (a crash mid-write) is
    dropped, any other bad line is an error naming it."""
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((line, json.loads(line)))
        except ValueError:
            if number < len(lines):
                raise ValueError(f"{path}:{number} is not a JSON object; fix or remove that line") from None
            print(f"{path}: dropping the torn last line {number} (the run stopped while writing it)", flush=True)
    return rows


def _aside_name(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(path.stat().st_mtime))
    candidate, n = path.with_name(f"{path.stem}.{stamp}{path.suffix}"), 1
    while candidate.exists():
        candidate, n = path.with_name(f"{path.stem}.{stamp}-{n}{path.suffix}"), n + 1
    return candidate


class FileLogger:
    def __init__(self, path: Path, resume_step: int | None, resume_row: dict[str, Any] | None = None):
        """``resume_step``: the checkpoint step this run resumed from, None for a fresh start;
        ``resume_row``: that step's metrics row as saved in the checkpoint (written here if the file lacks
        it: the run stopped after the save, before the row was logged)."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            if path.exists() and path.read_text().strip():
                aside = _aside_name(path)
                os.replace(path, aside)
                print(f"fresh start: the metrics already in {path} were moved to {aside}", flush=True)
            return
        rows = [(line, row) for line, row in (_read_lines(path) if path.exists() else [])
                if row.get("step", 0) <= resume_step]
        kept = [line for line, _ in rows]
        if resume_row is not None and not any(row.get("step") == resume_step for _, row in rows):
            kept.append(_line(resume_row, resume_step))
            print(f"{path}: restored the metrics row of step {resume_step} from its checkpoint", flush=True)
        write_text_atomic(path, "".join(line + "\n" for line in kept))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        with open(self.path, "a") as f:
            f.write(_line(metrics, step) + "\n")


def _line(metrics: dict[str, Any], step: int) -> str:
    return json.dumps({"step": step, **jsonable_metrics(metrics)})


class ConsoleLogger:
    def log(self, metrics: dict[str, Any], step: int) -> None:
        shown = " - ".join(f"{k}:{v:.4g}" if isinstance(v, float) else f"{k}:{v}" for k, v in sorted(metrics.items()))
        print(f"step:{step} - {shown}", flush=True)


class TensorboardLogger:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()


class WandbLogger:
    """Set WANDB_MODE=offline to log without network; sync later with ``wandb sync``."""

    def __init__(self, project: str, experiment: str, config: dict, log_dir: Path):
        import wandb

        self.run = wandb.init(project=project, name=experiment, config=config, dir=str(log_dir), resume="allow")

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}, step=step)


class Tracking:
    def __init__(self, backends: list[str], project: str, experiment: str, config: dict, local_dir: str,
                 resume_step: int | None = None, resume_row: dict[str, Any] | None = None):
        """``resume_step``: the checkpoint step this run resumed from, None for a fresh start;
        ``resume_row``: that step's metrics row saved with the checkpoint (see :class:`FileLogger`)."""
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"trainer.logger has unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
        root = Path(local_dir)
        self.loggers: list[Any] = []
        for b in backends:
            if b == "console":
                self.loggers.append(ConsoleLogger())
            elif b == "file":
                self.loggers.append(FileLogger(root / "metrics.jsonl", resume_step, resume_row))
            elif b == "tensorboard":
                self.loggers.append(TensorboardLogger(Path(os.environ.get("TENSORBOARD_DIR", root / "tensorboard"))))
            elif b == "wandb":
                self.loggers.append(WandbLogger(project, experiment, config, root))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)
