"""Machines environment manager: task slots -> games, model text -> buttons, game state -> prompts.

See :mod:`agent_system.environments.base` for the contract and ``env_package/machines`` for the rules.
The games run in-process (an episode is a few list operations; no workers). Reset kwargs are the task
slot's ``env_kwargs`` (machine, adjective, room, buttons) plus the trainer's ``seed``, which this
environment does not need: the slot alone fixes the episode, so group copies and the paired
with/without-skill validations play identical tasks. ``task_category(i)`` is the machine type (the
curriculum's key and the metric tag); the anchor observation (GiGPO) is the machine type with its lit
buttons.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent_system.environments.base import EnvironmentManagerBase, Observation
from agent_system.environments.env_package.machines.envs import PROCEDURE_LENGTH, SUCCESS_REWARD, MachineGame
from agent_system.environments.env_package.machines.projection import machines_projection
from agent_system.environments.env_package.machines.tasks import task_from_kwargs
from agent_system.environments.prompts.machines import (
    MACHINES_NOTHING_PRESSED,
    MACHINES_OLDER_PRESSES,
    MACHINES_TEMPLATE,
)


class MachinesEnvironmentManager(EnvironmentManagerBase):
    """``num_envs`` machines episodes behind the text-in / text-out manager API."""

    def __init__(self, num_envs: int, max_steps: int, history_length: int, press_reward: float = 0.0):
        super().__init__(num_envs)
        if max_steps < PROCEDURE_LENGTH:
            raise ValueError(f"env.max_steps={max_steps} leaves no way to press the {PROCEDURE_LENGTH} buttons of a "
                             f"machine; set env.max_steps >= {PROCEDURE_LENGTH}")
        if history_length < 0:
            raise ValueError(f"env.history_length={history_length} must be >= 0")
        if not 0.0 <= press_reward < SUCCESS_REWARD / (PROCEDURE_LENGTH - 1):
            raise ValueError(f"env.machines.press_reward={press_reward} must be >= 0 and below "
                             f"{SUCCESS_REWARD / (PROCEDURE_LENGTH - 1):g}, so that starting the machine pays more "
                             f"than all the other right presses together (0 = binary reward)")
        self.press_reward = press_reward
        self.max_steps = max_steps
        self.history_length = history_length
        self.games: list[MachineGame] = []
        self._valid: list[bool | None] = []  # validity of each env's latest output (None before its first step)

    def reset(self, kwargs: list[dict[str, Any]]) -> tuple[Observation, list[dict[str, Any]]]:
        if len(kwargs) != self.num_envs:
            raise ValueError(f"reset got {len(kwargs)} kwargs dicts for {self.num_envs} envs")
        self.games = [MachineGame(task_from_kwargs(kw), self.max_steps, self.press_reward) for kw in kwargs]
        self._valid = [None] * self.num_envs
        return self._observation(), self._infos()

    def step(self, text_actions: list[str | None]) -> tuple[Observation, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        self._check_step_input(text_actions)
        active = [i for i, text in enumerate(text_actions) if text is not None]
        buttons, valids = machines_projection([text_actions[i] for i in active],
                                              [self.games[i].admissible for i in active])
        rewards = np.zeros(self.num_envs, dtype=np.float32)
        for i, button, valid in zip(active, buttons, valids):
            rewards[i] = self.games[i].step(button)
            self._valid[i] = valid
        dones = np.array([game.done for game in self.games], dtype=bool)
        return self._observation(), rewards, dones, self._infos()

    def task_category(self, env_idx: int) -> str:
        return self.games[env_idx].task.machine

    def _check_step_input(self, text_actions: list[str | None]) -> None:
        if not self.games:
            raise RuntimeError("step called before reset")
        if len(text_actions) != self.num_envs:
            raise ValueError(f"step got {len(text_actions)} texts for {self.num_envs} envs")
        for i, (text, game) in enumerate(zip(text_actions, self.games)):
            if (text is None) != game.done:
                state = "over; pass None for it" if game.done else "still playing; pass its model output, not None"
                raise ValueError(f"env {i}'s episode is {state}")
            if text is not None and not isinstance(text, str):
                raise TypeError(f"env {i}: model output must be a str, got {type(text).__name__}")

    def _infos(self) -> list[dict[str, Any]]:
        infos = []
        for game, valid in zip(self.games, self._valid):
            info = {"won": game.won, "jammed": game.jammed, "admissible_commands": game.admissible}
            if valid is not None:
                info["is_action_valid"] = valid
            infos.append(info)
        return infos

    def _prompt(self, game: MachineGame) -> str:
        skill = self.skill_context_fn(game.task.machine).strip("\n")
        shown = game.pressed[-self.history_length:] if self.history_length else []
        older = [MACHINES_OLDER_PRESSES] if len(shown) < len(game.pressed) else []
        return MACHINES_TEMPLATE.format(
            skill_context=f"{skill}\n\n" if skill else "", adjective=game.task.adjective, machine=game.task.machine,
            room=game.task.room, pressed=", ".join(older + shown) or MACHINES_NOTHING_PRESSED,
            buttons=" ".join(f"[{b}]" for b in game.admissible))

    def _observation(self) -> Observation:
        return Observation(text=[self._prompt(game) for game in self.games], image=None,
                           anchor=[f"{game.task.machine}|{','.join(game.pressed)}" for game in self.games])


def make_manager(env_cfg: Any, split: str, num_envs: int) -> MachinesEnvironmentManager:
    """Build the manager from the ``env`` config section; ``split`` does not change behaviour (the task
    slots carry the tasks: ``python -m agent_system.environments.env_package.machines.tasks``)."""
    return MachinesEnvironmentManager(num_envs, int(env_cfg.max_steps), int(env_cfg.history_length),
                                      float(env_cfg.machines.press_reward))
