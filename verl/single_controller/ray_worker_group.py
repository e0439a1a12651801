"""A group of Ray actors, one per rank, placed on one placement group and joined by torch.distributed.

The driver talks to the group in two ways:
- :meth:`execute_all` calls a method with the same arguments on every rank (init, save, load);
- :meth:`dispatch_dp` splits a :class:`DataProto` into equal per-rank chunks (data parallel), calls the
  method, and concatenates the per-rank outputs back in order.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from verl.protocol import DataProto


class RayWorkerGroup:
    def __init__(
        self,
        worker_cls: type,
        world_size: int,
        device: str,
        init_kwargs: dict[str, Any],
        register_timeout_s: int = 300,
        cpus_per_worker: float = 1.0,
    ):
        self.world_size = world_size
        bundle = {"CPU": cpus_per_worker, **({"GPU": 1} if device == "cuda" else {})}
        self._pg = placement_group([bundle] * world_size, strategy="PACK")
        ready, _ = ray.wait([self._pg.ready()], timeout=register_timeout_s)
        if not ready:
            remove_placement_group(self._pg)
            raise RuntimeError(
                f"Ray could not reserve {world_size} x {bundle} within {register_timeout_s}s "
                f"(cluster has {ray.cluster_resources()}). Lower trainer.n_gpus_per_node / trainer.nnodes, "
                "raise ray_init.num_cpus, or raise trainer.ray_wait_register_center_timeout."
            )
        remote_cls = ray.remote(worker_cls)
        self.workers = [
            remote_cls.options(
                num_cpus=bundle["CPU"],
                num_gpus=bundle.get("GPU", 0),
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._pg, placement_group_bundle_index=i),
            ).remote(rank=i, world_size=world_size, device=device, **init_kwargs)
            for i in range(world_size)
        ]
        addr, port = ray.get(self.workers[0].master_address.remote())
        self.execute_all("init_process_group", addr, port, register_timeout_s)

    def execute_all(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return ray.get([getattr(w, method).remote(*args, **kwargs) for w in self.workers])

    def execute_per_rank(self, method: str, per_rank: list[Any]) -> list[Any]:
        """Call ``method(per_rank[r])`` on rank r (the caller laid the data out itself)."""
        return ray.get([getattr(w, method).remote(x) for w, x in zip(self.workers, per_rank)])

    def dispatch_dp(self, method: str, data: DataProto, **kwargs: Any) -> DataProto:
        padded, pad = data.pad_to_divisor(self.world_size)
        chunks = padded.chunk(self.world_size)
        outs = ray.get([getattr(w, method).remote(c, **kwargs) for w, c in zip(self.workers, chunks)])
        merged = DataProto.concat(outs)
        merged.meta_info = outs[0].meta_info
        return merged.unpad(pad)

    def shutdown(self) -> None:
        try:
            self.execute_all("shutdown")
        finally:
            for w in self.workers:
                ray.kill(w)
            remove_placement_group(self._pg)
