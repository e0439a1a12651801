"""Starting or joining Ray: the one place that calls ``ray.init``.

Two cases, nothing in between:

* **Join** a running cluster when an address is given (``ray_init.address`` or ``$RAY_ADDRESS``), taking
  its resources as they are: ``num_cpus``/``num_gpus`` cannot be passed then (Ray refuses them).
* Otherwise **start a fresh local cluster** (``address="local"``), even when an earlier ``ray start`` left
  its address file behind: a bare ``ray.init()`` would silently join that stale cluster.

A local cluster keeps its traffic on loopback. Ray 2.60 turns ``_node_ip_address="127.0.0.1"`` into the
machine's network address (``services.resolve_ip_for_localhost``) and its GCS and raylets then listen on
all interfaces, unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` is set, which Ray reads once at import time.
So for a local start we set that variable for the processes Ray spawns (they inherit it) and switch the
already imported constant off for the duration of ``ray.init``; nodes are then labelled 127.0.0.1, the
GCS, raylet and workers listen on 127.0.0.1 only. Such a cluster is private to the run that started it (a
driver from outside would look for its raylet under the network address). Multi-node clusters cannot
work this way: ``ray start --address`` refuses to join with that variable set, and without it a worker
node rewrites ``127.0.0.1`` to the network address and cannot reach a loopback-only head. Nodes started
with ``ray start`` (docs/scale.md, "Multi-node") are therefore labelled, and listen, on the network address even
when given ``--node-ip-address=127.0.0.1``.
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Iterator

import ray

from verl.utils.progress import quiet_ray_auth_notice

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
ADDRESS_ENV = "RAY_ADDRESS"
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
WORKER_ENV_VARS = {"TOKENIZERS_PARALLELISM": "false"}


def cluster_address(configured: str | None = None) -> str | None:
    """The cluster to join: ``configured`` (``ray_init.address``), else ``$RAY_ADDRESS``, else None."""
    return configured or os.environ.get(ADDRESS_ENV) or None


@contextmanager
def _loopback_only() -> Iterator[None]:
    """Make Ray resolve this node's address to 127.0.0.1 while a local cluster starts (see module doc)."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_LOOPBACK_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_LOOPBACK_ENV] = "0"
    if saved_flag is not None:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = saved_env
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def init_ray(address: str | None = None, num_cpus: int | None = None, log_to_driver: bool = True) -> None:
    """Join the cluster at ``cluster_address(address)`` or start a fresh local one; no-op if connected.

    ``num_cpus`` sizes a local cluster (None = the machine's cores; GPUs are detected); when joining it must
    be None, because an existing cluster's resources are what they are.
    """
    joined = cluster_address(address)
    if joined is not None and num_cpus is not None:
        raise ValueError(
            f"joining the Ray cluster at {joined!r}: its resources are fixed by `ray start` on each node, so "
            f"ray_init.num_cpus={num_cpus} cannot apply. Fix: unset ray_init.num_cpus, or unset "
            f"ray_init.address and ${ADDRESS_ENV} to start a local cluster of that size")
    if ray.is_initialized():
        return
    common = dict(include_dashboard=False, log_to_driver=log_to_driver, runtime_env={"env_vars": WORKER_ENV_VARS})
    if joined is not None:
        ray.init(address=joined, **common)
        logger.info("joined the Ray cluster at %s: %s", joined, ray.cluster_resources())
        return
    quiet_ray_auth_notice()  # Ray's notice that the cluster it starts has token auth on (verl.utils.progress)
    with _loopback_only():
        ray.init(address="local", num_cpus=num_cpus, _node_ip_address=LOOPBACK, **common)

