"""Machines game rules: start a machine by pressing its buttons in the machine's own, arbitrary order.

Every machine has the same five buttons (shown in a per-task order); each machine *type* (the task
category: pump, lift, oven, mixer) starts only when three of them are pressed in a fixed order that
nothing in the task text reveals. The order is written in the machine's skill file
(``skills/machines/<type>.md``), so an agent either reads it from the skill context or has learnt it.

One episode:

* a pressed button stays lit and leaves the admissible list, so the admissible buttons are the unlit
  ones (five, then four, then three);
* pressing the next button of the procedure lights it; pressing any other admissible button jams the
  machine and ends the episode (reward 0);
* the press that completes the procedure starts the machine: the episode is won and pays
  :data:`SUCCESS_REWARD`; every other right press pays ``press_reward`` (``env.machines.press_reward``,
  0 by default: a binary episode reward), every other step 0;
* a turn whose output names no admissible button presses nothing (the turn is used up);
* the episode also ends when the turns left (``max_steps``) can no longer complete the procedure.

A policy that picks uniformly among the admissible buttons wins with probability 1/(5·4·3) = 1/60.

``press_reward`` densifies the signal without changing what success is: GRPO normalises returns within
a group of copies of one task, so with a binary reward a group whose copies all fail carries no gradient;
a right first press (1 in 5 at chance) then already separates the copies of a group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent_system.environments.categories import MACHINE_TYPES

BUTTONS: tuple[str, ...] = ("red", "blue", "green", "yellow", "white")

PROCEDURES: dict[str, tuple[str, ...]] = dict(zip(MACHINE_TYPES, (
    ("red", "blue", "green"),  # pump
    ("blue", "yellow", "red"),  # lift
    ("green", "white", "yellow"),  # oven
    ("yellow", "green", "blue"),  # mixer
)))
"""The fixed procedure of each machine type (what its skill file states). Every procedure starts with
a different button and no fixed button order serves two machine types."""

SUCCESS_REWARD = 10.0
PROCEDURE_LENGTH = 3


@dataclass(frozen=True)
class MachineTask:
    """One task: start the ``adjective`` ``machine`` in the ``room``; ``buttons`` is the display order."""

    machine: str
    adjective: str
    room: str
    buttons: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.machine not in PROCEDURES:
            raise ValueError(f"unknown machine {self.machine!r}; machines are: {', '.join(PROCEDURES)}")
        if sorted(self.buttons) != sorted(BUTTONS):
            raise ValueError(f"the buttons of a machines task must be an ordering of {', '.join(BUTTONS)}, "
                             f"got {list(self.buttons)}")
        for name in ("adjective", "room"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or not value.replace(" ", "").isalpha():
                raise ValueError(f"the {name} of a machines task must be a word, got {value!r}")


@dataclass
class MachineGame:
    """One episode of :class:`MachineTask` (see the module docstring for the rules)."""

    task: MachineTask
    max_steps: int
    press_reward: float = 0.0
    pressed: list[str] = field(default_factory=list)
    turns: int = 0
    won: bool = False
    jammed: bool = False

    @property
    def procedure(self) -> tuple[str, ...]:
        return PROCEDURES[self.task.machine]

    @property
    def admissible(self) -> list[str]:
        """The unlit buttons, in display order."""
        return [b for b in self.task.buttons if b not in self.pressed]

    @property
    def done(self) -> bool:
        presses_left = len(self.procedure) - len(self.pressed)
        return self.won or self.jammed or self.max_steps - self.turns < presses_left

    def step(self, button: str | None) -> float:
        """Press ``button`` (None: the output named no admissible button); returns the step reward."""
        if self.done:
            raise RuntimeError("the machines episode is over; reset before stepping again")
        if button is not None and button not in self.admissible:
            raise ValueError(f"{button!r} is not an admissible button now; admissible: {self.admissible}")
        self.turns += 1
        if button is None:
            return 0.0
        if button != self.procedure[len(self.pressed)]:
            self.jammed = True
            return 0.0
        self.pressed.append(button)
        self.won = len(self.pressed) == len(self.procedure)
        return SUCCESS_REWARD if self.won else self.press_reward
