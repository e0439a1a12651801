"""One ALFWorld TextWorld game played step by step: the unit of work of a parallel worker.

A :class:`GameSession` wraps TextWorld's PDDL backend (``textworld.envs.pddl.PddlEnv``) with ALFWorld's
``AlfredDemangler`` (object names such as ``alarmclock 2``), exactly as ALFWorld's ``AlfredTWEnv``
does for its text games. The game's PDDL domain and TextWorld grammar come from the game file (the
released games embed both; the grammar carries the goal sentence). A game file without them gets the
copies shipped in the alfworld wheel (``alfworld/data/alfred.pddl`` and ``alfred.twl2``), with the
goal sentence filled in from the trial's ``traj_data.json`` with ALFWorld's goal templates. The PDDL
translations of a game are reused across resets (:mod:`.translation_cache`), and the text grammar's
template parses across steps (:mod:`.parse_cache`).

Episode rules (SPEC §3): the episode ends when the game is won or after ``max_steps`` steps; the
step that wins pays :data:`WIN_REWARD`, every other step pays 0. A command that is not admissible
leaves the game unchanged ("Nothing happens.") but still uses up a step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import alfworld.gen.goal_library as goal_library
import textworld
from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH
from textworld.envs.pddl import PddlEnv

from agent_system.environments.env_package.alfworld import parse_cache, translation_cache
from agent_system.environments.env_package.alfworld.games import load_game_json

WIN_REWARD = 10.0
HIDDEN_COMMANDS = frozenset({"help"})  # admissible in the game but never offered to the agent


@dataclass
class StepResult:
    """What one reset or step of a game returns (plain data, cheap to send between processes)."""

    observation: str
    reward: float
    done: bool
    won: bool
    admissible_commands: list[str] = field(default_factory=list)


def game_data(game_path: str) -> dict:
    """The game JSON, with the wheel's domain / grammar filled in where the file has none."""
    data = load_game_json(game_path)
    if "pddl_problem" not in data:
        raise ValueError(f"ALFWorld game {game_path} has no 'pddl_problem'; it is not a game.tw-pddl file")
    if "pddl_domain" not in data:
        data["pddl_domain"] = Path(ALFRED_PDDL_PATH).read_text(encoding="utf-8")
    if "grammar" not in data:
        traj_file = Path(game_path).parent / "traj_data.json"
        if not traj_file.is_file():
            raise ValueError(
                f"ALFWorld game {game_path} has no 'grammar' and its folder no traj_data.json to take the goal "
                "from; use the game files written by `alfworld-download -f` or `alfworld-generate`"
            )
        goal = goal_sentence(json.loads(traj_file.read_text(encoding="utf-8")), traj_file)
        data["grammar"] = Path(ALFRED_TWL2_PATH).read_text(encoding="utf-8").replace("UNKNOWN GOAL", goal)
    return data


def goal_sentence(traj_data: dict, traj_file: Path) -> str:
    """The goal of a trial from ALFWorld's goal templates (the first one, so every worker agrees)."""
    try:
        params = traj_data["pddl_params"]
        goal_type = traj_data["task_type"] + ("_slice" if params.get("object_sliced") else "")
        template = goal_library.gdict[goal_type]["templates"][0]
        return template.format(
            obj=params["object_target"].lower(),
            recep=params["parent_target"].lower(),
            toggle=params.get("toggle_target", "").lower(),
            mrecep=params.get("mrecep_target", "").lower(),
        )
    except (KeyError, AttributeError, TypeError) as err:
        raise ValueError(
            f"{traj_file} lacks the goal fields ALFWorld needs (task_type, pddl_params.object_target / "
            f"parent_target ...): {err!r}"
        ) from err


class GameSession:
    """Plays one game at a time; :meth:`reset` loads a game, :meth:`step` applies one command."""

    def __init__(self, max_steps: int):
        if max_steps < 1:
            raise ValueError(f"env.max_steps={max_steps} must be >= 1")
        self.max_steps = max_steps
        translation_cache.install()
        parse_cache.install()
        infos = textworld.EnvInfos(won=True, admissible_commands=True)
        self._env = AlfredDemangler(shuffle=False)(PddlEnv(infos))
        self._steps = 0
        self._done = True  # nothing loaded yet

    def reset(self, game_path: str) -> StepResult:
        self._env.load(game_data(game_path))
        state = self._env.reset()
        self._steps = 0
        self._done = False
        return self._result(state, reward=0.0, done=False)

    def step(self, command: str) -> StepResult:
        if self._done:
            raise RuntimeError("GameSession.step called with no running episode; call reset(game_path) first")
        state, _, _ = self._env.step(command)
        self._steps += 1
        won = bool(state["won"])
        self._done = won or self._steps >= self.max_steps
        return self._result(state, reward=WIN_REWARD if won else 0.0, done=self._done)

    @staticmethod
    def _result(state: textworld.GameState, reward: float, done: bool) -> StepResult:
        commands = [c for c in state["admissible_commands"] if c not in HIDDEN_COMMANDS]
        return StepResult(state.feedback, reward, done, bool(state["won"]), commands)
