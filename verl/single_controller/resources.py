"""The Ray resources a run will ask for, counted before anything starts, and checked against the cluster.

Every Ray actor of a run is one line of the plan: the rank processes (one bundle per rank, all roles
colocated) and every environment worker of every split (train, validation and final test envs all live
at the same time). A local cluster is sized from the plan; a joined one is checked against it, and a
cluster that cannot hold the plan stops the run at start-up with each line, the totals and the keys to
change, instead of leaving actors that never start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class ClusterTooSmall(RuntimeError):
    """The Ray cluster cannot hold what the run asks for; the message lists the numbers and the keys."""


@dataclass(frozen=True)
class Demand:
    """``count`` Ray actors of ``cpus``/``gpus`` each; ``keys`` are the config keys that set them."""

    what: str
    count: int
    cpus: float
    gpus: float = 0.0
    keys: str = ""

    def line(self) -> str:
        each = f"{self.cpus:g} CPU" + (f" + {self.gpus:g} GPU" if self.gpus else "")
        return f"{self.what}: {self.count} x {each} ({self.keys})"


class ResourcePlan:
    def __init__(self, demands: list[Demand]):
        self.demands = [d for d in demands if d.count > 0]

    @property
    def cpus(self) -> float:
        return sum(d.count * d.cpus for d in self.demands)

    @property
    def gpus(self) -> float:
        return sum(d.count * d.gpus for d in self.demands)

    def local_cpus(self, machine_cpus: int) -> int:
        """Logical CPUs for a local cluster: the plan, and at least the machine's cores (Ray's CPUs are
        scheduling slots, so a small machine may run more env workers than it has cores)."""
        return max(machine_cpus, math.ceil(self.cpus - 1e-9))

    def summary(self) -> str:
        lines = "\n".join(f"  {d.line()}" for d in self.demands)
        return f"Ray resource plan: {self.cpus:g} CPU, {self.gpus:g} GPU\n{lines}"

    def check(self, cluster: dict[str, float]) -> None:
        """Raise naming what does not fit when the cluster's totals cannot hold the plan."""
        short = [f"{name}: the plan needs {need:g}, the cluster has {cluster.get(name, 0.0):g}"
                 for name, need in (("CPU", self.cpus), ("GPU", self.gpus)) if need > cluster.get(name, 0.0) + 1e-9]
        if short:
            raise ClusterTooSmall(
                "the Ray cluster is too small for this run (" + "; ".join(short) + ").\n" + self.summary() +
                "\nFix: lower the counts above (the keys in brackets), raise ray_init.num_cpus for a local cluster, "
                "or add nodes / `ray start --num-cpus --num-gpus` resources to a joined one.")
