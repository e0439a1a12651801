"""Ray-side distribution code: worker groups (one Ray actor per rank) on a placement group."""

from verl.single_controller.ray_worker_group import RayWorkerGroup
from verl.single_controller.worker import Worker

__all__ = ["RayWorkerGroup", "Worker"]
