"""Starting or joining Ray: a fresh loopback cluster by default, an existing one only when named."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

PROBE = """
import json, ray
from verl.utils.ray_utils import init_ray
init_ray({args})
print(json.dumps({{"gcs": ray.get_runtime_context().gcs_address, "node_ip": ray.util.get_node_ip_address(),
                   "cpus": ray.cluster_resources().get("CPU")}}))
"""


def probe(args: str = "", env: dict | None = None) -> dict:
    """A fresh Python process calls ``init_ray(args)`` and reports the cluster it got."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(args=args)], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, **(env or {})}, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_local_cluster_is_fresh_and_on_loopback(ray_cluster):
    """The test session's cluster is running (and left its address file): a new run starts its own."""
    import ray

    info = probe("num_cpus=3, log_to_driver=False")
    assert info["gcs"] != ray.get_runtime_context().gcs_address
    assert info["node_ip"] == "127.0.0.1" and info["gcs"].startswith("127.0.0.1:")
    assert info["cpus"] == 3


def test_num_cpus_cannot_resize_a_joined_cluster():
    from verl.utils.ray_utils import init_ray

    with pytest.raises(ValueError, match="ray_init.num_cpus=4 cannot apply"):
        init_ray("127.0.0.1:1", num_cpus=4)
