"""faults.py's dead_env_workers scenario, CI-sized: real kill -9 / SIGSTOP of ALFWorld worker processes."""

from __future__ import annotations

from benchmarks import faults_env


def test_killed_and_hung_workers_fail_their_episodes_and_are_replaced(ray_cluster, alfworld_root):
    figures = faults_env.run(kills=2, hangs=1, num_envs=2, step_timeout_s=10.0, data_path=str(alfworld_root))
    assert figures["problems"] == [] and not figures["lost"], figures
    assert figures["kills_survived"] == 2 and figures["hangs_survived"] == 1
    assert figures["wins_wrongly_counted"] == 0 and figures["episodes_failed_by_a_fault"] == 3
    assert figures["unharmed_episodes"] == figures["unharmed_episodes_won"] == 2 * 4 - 3
    assert 10.0 <= figures["hang_to_step_end_s"][0] < 10.0 + faults_env.HANG_MARGIN_S
