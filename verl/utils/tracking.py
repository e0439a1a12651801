"""Metric loggers selected by ``trainer.logger``: console, file (JSON lines), tensorboard, wandb.

``file`` appends one JSON object per step (with a ``step`` key) to ``<default_local_dir>/metrics.jsonl``.
On resume, lines beyond the resumed step (written after the last checkpoint) are dropped first, so the
file always describes exactly one run history.
"""

from __future__ import annotations

import json
import math
import os
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


class FileLogger:
    def __init__(self, path: Path, resume_step: int):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():  # keep only the history up to the checkpoint we resume from
            kept = [line for line in path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
            write_text_atomic(path, "".join(line + "\n" for line in kept))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **{k: _jsonable(v) for k, v in metrics.items()}}) + "\n")


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
                 resume_step: int = 0):
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise ValueError(f"trainer.logger has unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
        root = Path(local_dir)
        self.loggers: list[Any] = []
        for b in backends:
            if b == "console":
                self.loggers.append(ConsoleLogger())
            elif b == "file":
                self.loggers.append(FileLogger(root / "metrics.jsonl", resume_step))
            elif b == "tensorboard":
                self.loggers.append(TensorboardLogger(Path(os.environ.get("TENSORBOARD_DIR", root / "tensorboard"))))
            elif b == "wandb":
                self.loggers.append(WandbLogger(project, experiment, config, root))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        for logger in self.loggers:
            logger.log(metrics, step)
