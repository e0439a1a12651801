"""Ray-side distribution code: rank processes on one placement group, every role colocated on each rank."""

from verl.single_controller.ray_worker_group import RankPool, RayWorkerGroup
from verl.single_controller.worker import Worker

__all__ = ["RankPool", "RayWorkerGroup", "Worker"]
