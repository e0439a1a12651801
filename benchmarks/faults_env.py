"""faults.py scenario ``dead_env_workers`` (issue 15, scenario 2): killed and hung ALFWorld workers.

Real games in real Ray worker processes, played through the trainer's manager
(``alfworld_manager.build_manager``) with each game's walkthrough, so every episode whose worker survives
ends in a win. Episode after episode, one worker process is hit mid-episode:

- a **kill**: ``kill -9`` of the worker's PID, alternately between two steps and while a step is running
  (a timer fires during the step);
- a **hang**: ``SIGSTOP`` of the worker's PID before a step (the process is alive and silent).

Each time the step must come back (a hang within ``env.step_timeout_s`` plus a margin for replacing the
worker), every episode of the hit worker must end as a failure (``done``, ``won=False``,
``info["worker_failed"]``) and never count as a win, the worker must be replaced by a new process (the
old PID gone), the other worker's envs must win their games, and the next episode must run on the
replacement. Figures: kills and hangs survived, wins wrongly counted (must be 0), seconds from the
hang to the step's end against ``env.step_timeout_s``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import psutil
import ray
from omegaconf import OmegaConf

from agent_system.environments.alfworld_manager import build_manager
from agent_system.environments.env_package.alfworld.check_data import walkthrough_of
from agent_system.environments.env_package.alfworld.games import list_games, unpack_shared_data

HANG_MARGIN_S = 30.0  # replacing the stopped worker (kill + a fresh process) may add this much on 2 busy cores
KILL_DURING_STEP_AFTER_S = 0.05  # the timer of a kill fired while a step runs


def _act(command: str) -> str:
    return f"<think>follow the plan</think><action>{command}</action>"


def _pid(worker: Any) -> int:
    return ray.get(worker.pid.remote())


def _gone(pid: int, wait_s: float = 10.0) -> bool:
    """Whether process ``pid`` has exited (a zombie waiting for its parent counts) within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def _play_episode(manager, seeds: list[int], hit: str | None, hit_step: int, victim_index: int) -> dict[str, Any]:
    """Reset ``seeds``, replay the walkthroughs; ``hit`` ("kill_between", "kill_during", "hang", None)
    strikes worker ``victim_index`` at step ``hit_step``. Returns what happened to every env; ``hit_envs`` are
    the victim's envs still playing when it was hit."""
    envs = manager.envs
    plans = [walkthrough_of(manager.game_for_seed(s)) for s in seeds]
    _, infos = manager.reset([{"seed": s} for s in seeds])
    victim = envs.workers[victim_index]
    victim_pid = _pid(victim)
    hit_envs = [i for i in range(envs.num_envs) if envs.worker_of(i) == victim]
    done = [False] * envs.num_envs
    won = [False] * envs.num_envs
    failed = [False] * envs.num_envs
    hang_s = None
    harmed: list[int] = []
    for t in range(max(map(len, plans))):
        texts = [None if done[i] else _act(plans[i][t] if t < len(plans[i]) else "look") for i in range(len(seeds))]
        if all(text is None for text in texts):
            break
        timer = None
        if hit is not None and t == hit_step:
            harmed = [i for i in hit_envs if not done[i]]  # an env that already finished keeps its result
            if hit == "kill_between":
                os.kill(victim_pid, signal.SIGKILL)
            elif hit == "kill_during":
                timer = threading.Timer(KILL_DURING_STEP_AFTER_S, os.kill, (victim_pid, signal.SIGKILL))
                timer.start()
            elif hit == "hang":
                os.kill(victim_pid, signal.SIGSTOP)
        started = time.perf_counter()
        _, _, dones, infos = manager.step(texts)
        if hit == "hang" and t == hit_step:
            hang_s = time.perf_counter() - started
        if timer is not None:
            timer.join()
        for i, info in enumerate(infos):
            if texts[i] is not None:
                won[i] = won[i] or bool(info["won"])
                failed[i] = failed[i] or bool(info["worker_failed"])
        done = dones.tolist()
    return {"hit_envs": harmed, "won": won, "failed": failed, "done": done, "hang_s": hang_s,
            "victim_pid": victim_pid, "victim_replaced": envs.workers[victim_index] != victim,
            "victim_gone": _gone(victim_pid)}


def run(kills: int, hangs: int, num_envs: int = 4, step_timeout_s: float = 10.0, seed: int = 0,
        data_path: str | None = None) -> dict[str, Any]:
    """``kills`` kill -9 and ``hangs`` SIGSTOP of ALFWorld workers (2 workers, ``num_envs`` envs), each in its
    own episode, then one clean episode on the replaced workers; the scenario's figures."""
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    root = data_path or str(unpack_shared_data())
    env_cfg = OmegaConf.create({
        "max_steps": 50, "history_length": 2, "resources_per_worker": {"num_cpus": 0.1}, "num_workers": 2,
        "step_timeout_s": step_timeout_s})
    manager = build_manager(env_cfg, list_games(root, "valid_seen"), num_envs)
    manager.set_skill_context_fn(lambda category: "")
    hits = ["kill_during" if k % 2 else "kill_between" for k in range(kills)] + ["hang"] * hangs
    figures = {"kills": kills, "kills_survived": 0, "hangs": hangs, "hangs_survived": 0, "episodes": 0,
               "episodes_failed_by_a_fault": 0, "wins_wrongly_counted": 0, "unharmed_episodes": 0,
               "unharmed_episodes_won": 0, "hang_to_step_end_s": [], "step_timeout_s": step_timeout_s,
               "num_envs": num_envs, "workers": 2, "problems": []}
    try:
        for n, hit in enumerate([*hits, None]):  # the last episode: nothing hit, all must win
            seeds = [seed * 1000 + num_envs * n + i for i in range(num_envs)]
            result = _play_episode(manager, seeds, hit, hit_step=1 + n % 3, victim_index=n % 2)
            harmed = set(result["hit_envs"]) if hit else set()
            figures["episodes"] += num_envs
            figures["wins_wrongly_counted"] += sum(result["won"][i] for i in harmed)
            figures["episodes_failed_by_a_fault"] += sum(result["failed"][i] and not result["won"][i] for i in harmed)
            unharmed = [i for i in range(num_envs) if i not in harmed]
            figures["unharmed_episodes"] += len(unharmed)
            figures["unharmed_episodes_won"] += sum(result["won"][i] and not result["failed"][i] for i in unharmed)
            if hit is None:
                continue
            survived = (all(result["done"]) and result["victim_replaced"] and result["victim_gone"]
                        and all(result["failed"][i] and not result["won"][i] for i in harmed))
            if hit == "hang":
                figures["hang_to_step_end_s"].append(round(result["hang_s"], 1))
                survived = survived and result["hang_s"] <= step_timeout_s + HANG_MARGIN_S
                figures["hangs_survived"] += survived
            else:
                figures["kills_survived"] += survived
            if not survived:
                figures["problems"].append({"hit": hit, **{k: v for k, v in result.items() if k != "hang_s"}})
    finally:
        manager.close()
        if started_ray:
            ray.shutdown()
    figures["lost"] = bool(figures["kills_survived"] < kills or figures["hangs_survived"] < hangs
                           or figures["wins_wrongly_counted"]
                           or figures["unharmed_episodes_won"] < figures["unharmed_episodes"])
    return figures
