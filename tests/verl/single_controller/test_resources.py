"""Counting a run's Ray resources and checking them against the cluster before anything starts."""

from __future__ import annotations

import pytest

from tests.conftest import trainer_config
from verl.single_controller.ray_worker_group import bundles_that_fit, check_ranks_fit
from verl.single_controller.resources import ClusterTooSmall
from verl.trainer.main_ppo import env_sizes, resource_plan


def test_bundles_fit_per_node_never_across_nodes():
    gpu_rank = {"CPU": 1.0, "GPU": 1.0}
    assert bundles_that_fit(gpu_rank, [{"CPU": 16.0, "GPU": 4.0}]) == 4
    assert bundles_that_fit(gpu_rank, [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 1.0, "GPU": 4.0}]) == 3
    assert bundles_that_fit({"CPU": 1.0}, [{"CPU": 1.5}, {"CPU": 0.5}]) == 1  # two halves are not one CPU
    assert bundles_that_fit(gpu_rank, [{"CPU": 64.0}]) == 0


def test_ranks_that_do_not_fit_fail_with_the_numbers_and_keys():
    check_ranks_fit(4, {"CPU": 1.0, "GPU": 1.0}, [{"CPU": 16.0, "GPU": 4.0}])
    with pytest.raises(ClusterTooSmall) as err:
        check_ranks_fit(8, {"CPU": 1.0, "GPU": 1.0}, [{"CPU": 16.0, "GPU": 4.0}, {"CPU": 2.0, "GPU": 4.0}])
    msg = str(err.value)
    assert "8 ranks need 8 x {CPU: 1, GPU: 1}" in msg and "hold only 6" in msg
    assert "node 1: CPU=2, GPU=4" in msg and "trainer.nnodes x trainer.n_gpus_per_node" in msg


def test_plan_counts_every_rank_and_every_env_worker_of_every_split():
    """The reference ALFWorld run: 4 GPUs, 16 tasks x 8 envs; validation of 140 games in two even batches
    of 70 envs, the test of 50 in one; 0.1 CPU per env, so one env worker per reserved core."""
    cfg = trainer_config(["trainer.device=cpu", "trainer.n_gpus_per_node=4", "data.train_batch_size=16",
                          "env.rollout.n=8", "data.val_batch_size=128", "trainer.test_after_train=True",
                          "algorithm.adv_estimator=gae"])
    sizes = env_sizes(cfg, n_val_tasks=140, n_test_tasks=50)
    assert sizes == {"train": 128, "val": 70, "test": 50}
    plan = resource_plan(cfg, 4, sizes)
    # 128 envs x 0.1 = 12.8 CPUs -> 13 workers of <= 10 envs (1.0 CPU each); 70 -> 7 x 10; 50 -> 5 x 10
    assert [(d.count, pytest.approx(d.cpus)) for d in plan.demands] == [(4, 1.0), (13, 1.0), (7, 1.0), (5, 1.0)]
    assert plan.cpus == pytest.approx(4 + 25) and plan.gpus == 0  # one bundle per rank, critic included
    assert plan.local_cpus(machine_cpus=2) == 29 and plan.local_cpus(machine_cpus=64) == 64
    plan.check({"CPU": 29.0})
    with pytest.raises(ClusterTooSmall) as err:
        plan.check({"CPU": 16.0})
    msg = str(err.value)
    assert "CPU: the plan needs 29, the cluster has 16" in msg
    assert "test env workers: 5 x 1 CPU (data.val_batch_size, trainer.test_after_train; " \
           "env.num_workers, env.resources_per_worker.num_cpus)" in msg
    pinned = resource_plan(trainer_config(["trainer.device=cpu", "env.num_workers=2"]), 1, {"train": 16})
    assert [(d.count, pytest.approx(d.cpus)) for d in pinned.demands][1:] == [(2, 0.8)]
    assert "ray_init.num_cpus" in msg


def test_envs_in_the_trainer_process_reserve_nothing():
    cfg = trainer_config(["env.env_name=echo", "trainer.device=cpu", "trainer.n_gpus_per_node=2"])
    plan = resource_plan(cfg, 2, env_sizes(cfg, 8, 8))
    assert [d.what for d in plan.demands] == ["ranks (actor, rollout, reference, critic colocated)"]
    assert plan.cpus == 2
