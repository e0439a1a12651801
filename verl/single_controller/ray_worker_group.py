"""Rank processes on one placement group, and each role's view of them.

:class:`RankPool` reserves one bundle per rank (``{"CPU": 1}`` plus ``{"GPU": 1}`` on CUDA) in a single
placement group, starts one :class:`~verl.single_controller.worker.Worker` per bundle hosting every role,
and joins them in one ``torch.distributed`` group. Before reserving anything it checks that the cluster's
nodes can hold the bundles at all, so a cluster that is too small fails at once with the numbers and the
keys to change instead of waiting for resources that never come.

:class:`RayWorkerGroup` is one role's view of the pool, the object the trainer talks to:
- :meth:`~RayWorkerGroup.execute_all` calls a method with the same arguments on every rank (init, save, load);
- :meth:`~RayWorkerGroup.dispatch_dp` splits a :class:`DataProto` into equal per-rank chunks (data
  parallel), calls the method, and concatenates the per-rank outputs back in order.
"""

from __future__ import annotations

import math
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from verl.protocol import DataProto
from verl.single_controller.resources import ClusterTooSmall
from verl.single_controller.worker import RoleSpecs, Worker
from verl.utils.ray_utils import LOOPBACK

SIZE_KEYS = "trainer.nnodes x trainer.n_gpus_per_node"


def bundles_that_fit(bundle: dict[str, float], nodes: list[dict[str, float]]) -> int:
    """How many copies of ``bundle`` the nodes (their total resources) can hold, no bundle spanning nodes."""
    def per_node(res: dict[str, float]) -> int:
        return min(math.floor(res.get(k, 0.0) / v + 1e-9) for k, v in bundle.items() if v > 0)

    return sum(per_node(res) for res in nodes)


def check_ranks_fit(world_size: int, bundle: dict[str, float], nodes: list[dict[str, float]]) -> None:
    """Raise with the numbers and the keys to change when the nodes cannot hold ``world_size`` bundles."""
    fit = bundles_that_fit(bundle, nodes)
    if fit >= world_size:
        return
    listing = "; ".join(f"node {i}: {', '.join(f'{k}={v:g}' for k, v in sorted(r.items()) if k in bundle)}"
                        for i, r in enumerate(nodes)) or "no nodes"
    fixes = [f"lower {SIZE_KEYS} (now {world_size} ranks)"]
    if "GPU" in bundle:
        fixes.append("add GPUs / nodes to the Ray cluster")
    fixes.append("give the cluster more CPUs (ray_init.num_cpus for a local cluster, `ray start --num-cpus` on "
                 "each node of a joined one)")
    raise ClusterTooSmall(
        f"the Ray cluster cannot place the trainer's ranks: {world_size} ranks need {world_size} x "
        f"{_fmt(bundle)} (actor, rollout, reference and critic share each rank), but its nodes hold only {fit} "
        f"such bundles ({listing}). Fix: " + ", or ".join(fixes) + ".")


def _fmt(bundle: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in bundle.items()) + "}"


def _alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


class RankPool:
    """``world_size`` rank processes, one placement-group bundle each, every role colocated on each rank."""

    def __init__(self, roles: RoleSpecs, world_size: int, device: str, register_timeout_s: int = 300,
                 cpus_per_rank: float = 1.0):
        self.world_size = world_size
        self.bundle = {"CPU": cpus_per_rank, **({"GPU": 1} if device == "cuda" else {})}
        check_ranks_fit(world_size, self.bundle, _alive_nodes())
        self._pg = placement_group([self.bundle] * world_size, strategy="PACK")
        ready, _ = ray.wait([self._pg.ready()], timeout=register_timeout_s)
        if not ready:
            remove_placement_group(self._pg)
            raise RuntimeError(
                f"Ray could not reserve {world_size} x {_fmt(self.bundle)} within {register_timeout_s}s: other jobs "
                f"hold the resources (free now: {ray.available_resources()}). Fix: wait for them, lower "
                f"{SIZE_KEYS}, or raise trainer.ray_wait_register_center_timeout.")
        remote_cls = ray.remote(Worker)
        self.workers = [
            remote_cls.options(
                num_cpus=self.bundle["CPU"],
                num_gpus=self.bundle.get("GPU", 0),
                scheduling_strategy=PlacementGroupSchedulingStrategy(self._pg, placement_group_bundle_index=i),
            ).remote(rank=i, world_size=world_size, device=device, roles=roles)
            for i in range(world_size)
        ]
        self.nodes = ray.get([w.node.remote() for w in self.workers])  # (node id, address) per rank
        # All ranks on one node talk over loopback; across nodes they meet at rank 0's node address.
        master = LOOPBACK if len({node_id for node_id, _ in self.nodes}) == 1 else self.nodes[0][1]
        port = ray.get(self.workers[0].free_port.remote())
        self.execute_all("init_process_group", master, port, register_timeout_s)

    def group(self, role: str) -> RayWorkerGroup:
        return RayWorkerGroup(self, role)

    def placement(self) -> str:
        """Which ranks run on which node, e.g. ``node 127.0.0.1 (3f2a9c1e): ranks 0, 1``."""
        by_node: dict[tuple[str, str], list[int]] = {}
        for rank, node in enumerate(self.nodes):
            by_node.setdefault(node, []).append(rank)
        return "; ".join(f"node {ip} ({node_id[:8]}): ranks {', '.join(map(str, ranks))}"
                         for (node_id, ip), ranks in by_node.items())

    def execute_all(self, method: str, *args: Any) -> list[Any]:
        """Call a :class:`Worker` (process-level) method on every rank."""
        return ray.get([getattr(w, method).remote(*args) for w in self.workers])

    def shutdown(self) -> None:
        try:
            self.execute_all("shutdown")
        finally:
            for w in self.workers:
                ray.kill(w)
            remove_placement_group(self._pg)


class RayWorkerGroup:
    """One role (``actor``, ``critic``) on every rank of a :class:`RankPool`."""

    def __init__(self, pool: RankPool, role: str):
        self.role = role
        self.world_size = pool.world_size
        self._workers = pool.workers

    def execute_all(self, method: str, *args: Any, **kwargs: Any) -> list[Any]:
        return ray.get([w.call.remote(self.role, method, *args, **kwargs) for w in self._workers])

    def execute_per_rank(self, method: str, per_rank: list[Any]) -> list[Any]:
        """Call ``method(per_rank[r])`` on rank r (the caller laid the data out itself)."""
        return ray.get([w.call.remote(self.role, method, x) for w, x in zip(self._workers, per_rank)])

    def dispatch_dp(self, method: str, data: DataProto, **kwargs: Any) -> DataProto:
        padded, pad = data.pad_to_divisor(self.world_size)
        chunks = padded.chunk(self.world_size)
        outs = ray.get([w.call.remote(self.role, method, c, **kwargs) for w, c in zip(self._workers, chunks)])
        merged = DataProto.concat(outs)
        merged.meta_info = outs[0].meta_info
        return merged.unpad(pad)
