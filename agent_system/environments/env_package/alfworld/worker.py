"""One env worker process: the :class:`GameSession` of each env it holds, driven one batch call at a time.

:class:`AlfworldEnvs` runs a few of these as Ray actors, each holding a block of envs; one ``reset`` or
``step`` call carries the commands of all its envs, so a round costs one Ray round trip per worker, not
per env. The worker plays its envs one after another (the parallelism is across workers, one per core).
A game that raises ends only its own env's call: its slot of the answer is an :class:`EnvError`, the
other envs of the batch answer normally and the worker stays up.
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass

from agent_system.environments.env_package.alfworld.session import GameSession, StepResult

logger = logging.getLogger(__name__)


@dataclass
class EnvError:
    """A game that raised during a reset or step (plain data, sent back instead of a result)."""

    message: str


class EnvWorker:
    """The sessions of the envs one worker holds, keyed by env index."""

    def __init__(self, max_steps: int):
        self.max_steps = max_steps
        self._sessions: dict[int, GameSession] = {}

    def pid(self) -> int:
        return os.getpid()

    def reset(self, game_paths: dict[int, str]) -> dict[int, StepResult | EnvError]:
        """Load ``game_paths[i]`` into env ``i`` (a session is made on an env's first reset)."""
        return {i: self._call(i, "reset", path) for i, path in game_paths.items()}

    def step(self, commands: dict[int, str]) -> dict[int, StepResult | EnvError]:
        """Apply ``commands[i]`` to env ``i``."""
        return {i: self._call(i, "step", command) for i, command in commands.items()}

    def _call(self, env: int, method: str, arg: str) -> StepResult | EnvError:
        try:
            session = self._sessions.get(env)
            if session is None:
                session = self._sessions[env] = GameSession(self.max_steps)
            return getattr(session, method)(arg)
        except Exception as err:  # noqa: BLE001 - a game's failure is reported for its env alone
            logger.warning("ALFWorld env %d: %s(%r) raised %r", env, method, arg[:200], err)
            return EnvError(f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}")
