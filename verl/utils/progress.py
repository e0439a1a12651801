"""What a person watching a run sees: progress bars, one timing line per step, no Ray auth notice.

- :func:`progress_bar`: a tqdm bar on stderr (training steps, rollout turns, validation batches) when
  ``trainer.progress_bar`` is on and stderr is a terminal; otherwise a silent one (pipes, log files,
  pytest's captured output, CI), so logs stay free of carriage-return noise.
- :func:`step_timing_line`: the phases of one training step in one line, printed after every step.
- :func:`quiet_ray_auth_notice`: Ray 2.60 turns token authentication on for every local cluster that
  ``ray.init`` starts (``authentication_token_setup.enable_token_auth_by_default``: it sets
  ``RAY_AUTH_MODE=token`` for the process, writes a token to ``~/.ray/auth_token`` if none exists) and
  logs a WARNING each time saying so and how to opt out. Nothing is wrong and the user has nothing to do:
  the cluster the trainer starts for itself is protected. Setting ``RAY_AUTH_MODE`` ourselves is not an
  option once ``ray`` is imported (its config is read at import; a late ``token`` leaves the driver
  without the token and the start fails). So this drops exactly that notice from Ray's logger; Ray's
  warning that authentication is *disabled* (someone set ``RAY_AUTH_MODE=disabled``) still shows.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from tqdm import tqdm

RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_AUTH_ENABLED_NOTICE = "Token authentication is enabled for this Ray cluster."

# (timings key, label) of the step line; "-" marks a phase that did not run in this step.
STEP_PHASES = (("gen", "gen"), ("old_log_prob", "old_log_prob"), ("ref", "ref"), ("values", "values"),
               ("adv", "adv"), ("update_actor", "update"))
OPTIONAL_PHASES = (("update_critic", "update_critic"), ("testing", "val"), ("save_checkpoint", "save"))


def progress_bar(enabled: bool, **kwargs: Any) -> tqdm:
    """``tqdm(**kwargs)`` on stderr, shown only when ``enabled`` and stderr is a terminal."""
    return tqdm(file=sys.stderr, disable=not (enabled and sys.stderr.isatty()), dynamic_ncols=True, **kwargs)


def step_timing_line(step: int, total_steps: int, timings: dict[str, float]) -> str:
    """``step 3/10 | gen 6.5s | old_log_prob - | ... | update 9.6s | total 19.0s`` (seconds per phase)."""
    parts = [f"{label} {timings[key]:.1f}s" if key in timings else f"{label} -" for key, label in STEP_PHASES]
    parts += [f"{label} {timings[key]:.1f}s" for key, label in OPTIONAL_PHASES if key in timings]
    total = sum(timings.get(key, 0.0) for key in ("step", "testing", "save_checkpoint"))
    return " | ".join([f"step {step}/{total_steps}", *parts, f"total {total:.1f}s"])


class _DropRayAuthEnabledNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RAY_AUTH_ENABLED_NOTICE)


def quiet_ray_auth_notice() -> None:
    """Drop Ray's "token authentication is enabled" notice (see the module doc); idempotent."""
    logger = logging.getLogger(RAY_AUTH_LOGGER)
    if not any(isinstance(f, _DropRayAuthEnabledNotice) for f in logger.filters):
        logger.addFilter(_DropRayAuthEnabledNotice())
