"""Two Ray nodes on one machine (``ray start --head`` + ``ray start --address``), the trainer joining them
through ``RAY_ADDRESS`` with ``trainer.nnodes=2 trainer.n_gpus_per_node=1``: one rank per node, a checkpoint
in the shared folder, and a resume."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import echo_overrides
from tests.verl.trainer.test_main_ppo import cli, read_metrics

RAY = str(Path(sys.executable).parent / "ray")
# Token authentication (on by default for `ray start` in Ray 2.60) needs a token on every node and driver;
# this private test cluster goes without.
CLUSTER_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(log: Path, *args: str) -> subprocess.Popen:
    """``ray start --block`` with one CPU and ports of its own; stopping the process stops the node."""
    ports = [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
                             "--node-ip-address=127.0.0.1", *ports, *args], env=CLUSTER_ENV,
                            start_new_session=True, stdout=log.open("a"), stderr=subprocess.STDOUT)


def stop_node(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything the node left behind (its own process group)
    except ProcessLookupError:
        pass


def wait_for_port(port: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def two_node_cluster(tmp_path):
    temp = Path(tempfile.mkdtemp(prefix="ray_mn_", dir="/tmp"))  # short: Ray's Unix socket paths live under it
    port = free_port()
    nodes = [start_node(tmp_path / "head.log", "--head", f"--port={port}", f"--temp-dir={temp}",
                        "--include-dashboard=false", f"--ray-client-server-port={free_port()}")]
    try:
        wait_for_port(port)
        nodes.append(start_node(tmp_path / "worker.log", f"--address=127.0.0.1:{port}"))
        yield f"127.0.0.1:{port}"
    finally:
        for node in reversed(nodes):
            stop_node(node)
        shutil.rmtree(temp, ignore_errors=True)


def test_two_nodes_one_rank_each_checkpoint_and_resume(two_node_cluster, tiny_model_dir, echo_slots, tmp_path):
    out = tmp_path / "run"  # one folder both nodes write to (a shared filesystem across machines)
    env = {**CLUSTER_ENV, "RAY_ADDRESS": two_node_cluster}

    def train(total: int) -> str:
        args = echo_overrides(tiny_model_dir, echo_slots, out, trainer__nnodes=2, trainer__n_gpus_per_node=1,
                              trainer__total_training_steps=total, trainer__save_freq=1, env__max_steps=2)
        deadline = time.monotonic() + 120
        while True:  # the worker node registers a few seconds after its `ray start` returns
            proc = cli(args, tmp_path, env=env)
            if proc.returncode != 2 or "the cluster has 1" not in proc.stderr or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    first = train(1)
    placement = re.search(r"ranks placed on one placement group of 2 x \{'CPU': 1.0\}: (.*)", first).group(1)
    assert len(re.findall(r"node \S+ \(\w+\): ranks \d", placement)) == 2, placement  # one rank per node
    second = train(2)
    assert "resumed from" in second and "global step 1" in second
    assert [m["step"] for m in read_metrics(out)] == [1, 2]
    assert sorted(p.name for p in out.glob("global_step_*")) == ["global_step_1", "global_step_2"]
    assert len(list((out / "global_step_2" / "actor").glob("extra_state_rank_*.pt"))) == 2
