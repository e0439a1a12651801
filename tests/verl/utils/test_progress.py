"""Console output for a person watching a run: bars only on a terminal, one timing line, no Ray auth notice."""

from __future__ import annotations

import io
import logging
import sys

from ray._private.authentication import authentication_token_setup

from verl.utils.progress import RAY_AUTH_LOGGER, progress_bar, quiet_ray_auth_notice, step_timing_line


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_step_timing_line_names_every_phase_in_one_line():
    timings = {"gen": 6.54, "reward": 0.01, "adv": 0.02, "update_actor": 9.61, "step": 16.3, "save_checkpoint": 1.2}
    assert step_timing_line(3, 10, timings) == (
        "step 3/10 | gen 6.5s | old_log_prob - | ref - | values - | adv 0.0s | update 9.6s | save 1.2s | total 17.5s")


def test_bar_shows_only_when_enabled_and_stderr_is_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(True, total=3).disable  # a pipe / log file / pytest capture
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert progress_bar(False, total=3).disable  # trainer.progress_bar=false
    bar = progress_bar(True, total=3, desc="val_step_0", unit="batch")
    assert not bar.disable
    bar.update()
    bar.close()
    assert "val_step_0" in terminal.getvalue() and "1/3" in terminal.getvalue()


def test_ray_auth_enabled_notice_is_dropped_but_the_disabled_warning_stays():
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger(RAY_AUTH_LOGGER)
    saved_filters = logger.filters[:]
    logger.filters.clear()  # a trainer run earlier in this session installed the filter already
    logger.addHandler(handler)
    try:
        authentication_token_setup._warn_token_auth_enabled()  # Ray's own functions: its real wording
        assert len(records) == 1  # without the filter Ray's notice is logged
        quiet_ray_auth_notice()
        quiet_ray_auth_notice()  # idempotent
        authentication_token_setup._warn_token_auth_enabled()
        authentication_token_setup._warn_token_auth_disabled()
    finally:
        logger.removeHandler(handler)
        logger.filters[:] = saved_filters
    assert [r.getMessage().split(".")[0] for r in records] == [
        "Token authentication is enabled for this Ray cluster",
        "Token authentication is disabled for this Ray cluster"]
