"""One rank process: joins the ``torch.distributed`` group and hosts every role colocated on this rank.

verl colocates the actor, rollout engine, reference policy and critic in one process per GPU (its fused
worker): one CUDA context, one NCCL group, one placement-group bundle per rank. We do the same: the driver
starts one :class:`Worker` per rank, and each builds the role objects it is given (e.g. ``actor`` ->
:class:`verl.workers.fsdp_workers.ActorRolloutRefWorker`, ``critic`` -> ``CriticWorker``); calls reach a
role through :meth:`Worker.call`. A ``gae`` run on N GPUs therefore needs N GPUs, not 2N.
"""

from __future__ import annotations

import datetime
import os
import re
import resource
import socket
from typing import Any

import torch
import torch.distributed as dist

RoleSpecs = dict[str, tuple[type, dict[str, Any]]]
"""role name -> (role class, keyword arguments); a role is built as ``cls(rank, world_size, device, **kwargs)``."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Worker:
    """One rank. Roles build their models in their own ``init_model`` after the group is formed."""

    def __init__(self, rank: int, world_size: int, device: str, roles: RoleSpecs):
        self.rank = rank
        self.world_size = world_size
        self.device_type = device
        if device == "cuda":
            # Ray exposes exactly one GPU to this process through CUDA_VISIBLE_DEVICES.
            torch.cuda.set_device(0)
            self.device = torch.device("cuda", 0)
        else:
            self.device = torch.device("cpu")
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        self.roles = {name: cls(rank, world_size, self.device, **kwargs) for name, (cls, kwargs) in roles.items()}

    def call(self, role: str, method: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.roles[role], method)(*args, **kwargs)

    def node(self) -> tuple[str, str]:
        """(Ray node id, node address) of this rank."""
        import ray

        return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()

    def free_port(self) -> int:
        """Called on rank 0 only: a port for the other ranks to rendezvous at."""
        return _free_port()

    def init_process_group(self, master_addr: str, master_port: int, timeout_s: int) -> None:
        os.environ.update(
            MASTER_ADDR=master_addr,
            MASTER_PORT=str(master_port),
            RANK=str(self.rank),
            WORLD_SIZE=str(self.world_size),
        )
        dist.init_process_group(
            backend="nccl" if self.device_type == "cuda" else "gloo",
            rank=self.rank,
            world_size=self.world_size,
            timeout=datetime.timedelta(seconds=timeout_s),
        )

    def device_memory(self) -> int:
        """Bytes of memory this rank's models live in: the GPU's, or the host's on CPU (shared by its ranks)."""
        if self.device.type == "cuda":
            return torch.cuda.get_device_properties(self.device).total_memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    def peak_memory(self) -> dict[str, int]:
        return peak_memory(self.device)

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def peak_memory(device: torch.device) -> dict[str, int]:
    """High-water marks in bytes since the process started (or :func:`reset_peak_memory`): ``rss``, the
    resident set size of this process, and on GPU ``cuda_allocated``, the memory torch allocated."""
    peaks = {"rss": _vm_hwm_bytes()}
    if device.type == "cuda":
        peaks["cuda_allocated"] = torch.cuda.max_memory_allocated(device)
    return peaks


def reset_peak_memory(device: torch.device) -> None:
    try:  # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux (or not permitted): the peak then counts from process start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _vm_hwm_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
