"""Base class of every rank: joins the worker group's ``torch.distributed`` process group."""

from __future__ import annotations

import datetime
import os
import socket

import torch
import torch.distributed as dist


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class Worker:
    """One rank. Subclasses build their models in ``init_model`` after the group is formed."""

    def __init__(self, rank: int, world_size: int, device: str):
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

    def master_address(self) -> tuple[str, int]:
        """Called on rank 0 only: where the other ranks rendezvous."""
        import ray

        return ray.util.get_node_ip_address(), _free_port()

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

    def shutdown(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()
