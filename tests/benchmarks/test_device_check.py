"""benchmarks/device_check.py: the one script a task with a GPU runs; its CPU dry run must work end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from verl.utils.fs import REPO_ROOT


def test_cpu_dry_run_measures_every_part_without_an_error():
    """Every step of the device check (a 2-step trainer run, then per model: update, weight sync, the hf
    engine against bare ``generate``, memory against the plan) on CPU with small sizes."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "benchmarks.device_check", "--cpu-dry-run"], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["mode"] == "cpu-dry-run" and result["trainer"]["samples_per_step"] > 0
    models = [key for key in result if key.startswith("qwen2.5-")]
    assert models
    for name in models:
        assert "error" not in result[name], result[name].get("error")
        rollout = result[name]["rollout"]
        assert rollout["engine_tokens_per_s"] > 0 and rollout["bare_generate_tokens_per_s"] > 0
        assert result[name]["update"]["tokens_per_s"] > 0 and result[name]["memory"]["measured_peak_gib"] > 0
