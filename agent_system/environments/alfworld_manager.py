"""ALFWorld environment manager: seeds -> games, model text -> commands, game text -> prompts.

See :mod:`agent_system.environments.base` for the contract. Per episode the manager keeps the goal
sentence, the (observation, action) memory and the current raw observation (the GiGPO anchor).
Game choice is deterministic: reset kwargs with a ``gamefile`` (one of the split's game paths) play that
game; otherwise env ``i`` plays ``games[seed_i % len(games)]`` of the split's sorted game list, so group
copies (same seed) play the same game. Training draws games by seed; validation and the final test
play the games named by :func:`evaluation_tasks` (every game of the split, each once). In visual mode
(``visual`` set) the history window is rendered as an image (one ``[Observation]: ... [Action]: ...``
line per past step) and the prompt keeps the rest.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from agent_system.environments.base import EnvironmentManagerBase, Observation
from agent_system.environments.env_package.alfworld.envs import AlfworldEnvs, worker_layout
from agent_system.environments.env_package.alfworld.games import GameSpec, data_root, list_games, split_folder
from agent_system.environments.env_package.alfworld.projection import alfworld_projection
from agent_system.environments.prompts.alfworld import (
    ALFWORLD_FIRST_STEP_TEMPLATE,
    ALFWORLD_HISTORY_ENTRY,
    ALFWORLD_LATER_STEP_TEMPLATE,
    ALFWORLD_VISUAL_FIRST_STEP_TEMPLATE,
    ALFWORLD_VISUAL_LATER_STEP_TEMPLATE,
)
from agent_system.environments.visual import VisualContext, flatten

TASK_MARKER = "Your task is to: "

Projection = Callable[[list[str]], tuple[list[str], list[bool]]]


def task_from_intro(intro: str, game_path: str) -> str:
    """The goal sentence of a game's first observation (the text after 'Your task is to: ')."""
    start = intro.find(TASK_MARKER)
    if start == -1:
        raise ValueError(f"the first observation of {game_path} has no {TASK_MARKER.strip()!r} line: {intro[:200]!r}")
    return intro[start + len(TASK_MARKER) :].strip()


class AlfworldEnvironmentManager(EnvironmentManagerBase):
    """``envs.num_envs`` ALFWorld episodes behind the text-in / text-out manager API."""

    def __init__(
        self,
        envs: AlfworldEnvs,
        games: Sequence[GameSpec],
        history_length: int,
        projection: Projection = alfworld_projection,
        visual: VisualContext | None = None,
    ):
        super().__init__(envs.num_envs)
        if not games:
            raise ValueError("AlfworldEnvironmentManager needs at least one game")
        if history_length < 0:
            raise ValueError(f"env.history_length={history_length} must be >= 0")
        self.envs = envs
        self.games = list(games)
        self._by_path = {game.path: game for game in self.games}
        self.history_length = history_length
        self.projection = projection
        self.visual = visual
        self._images: list | None = None
        self._episode_games: list[GameSpec] = []
        self._tasks: list[str] = []
        self._memory: list[list[tuple[str, str]]] = []
        self._observations: list[str] = []
        self._prompts: list[str] = []
        self._dones: list[bool] = []
        self._infos: list[dict[str, Any]] = []

    def game_for_seed(self, seed: int) -> GameSpec:
        return self.games[seed % len(self.games)]

    def _game_for(self, kwargs: dict[str, Any], env_idx: int) -> GameSpec:
        gamefile = kwargs.get("gamefile") if isinstance(kwargs, dict) else None
        if gamefile is None:
            return self.game_for_seed(_seed_of(kwargs, env_idx))
        if gamefile not in self._by_path:
            raise ValueError(f"reset kwargs of env {env_idx} name gamefile {gamefile!r}, which is not one of the "
                             f"{len(self.games)} games of this split; use a path from evaluation_tasks()")
        return self._by_path[gamefile]

    def reset(self, kwargs: list[dict[str, Any]]) -> tuple[Observation, list[dict[str, Any]]]:
        if len(kwargs) != self.num_envs:
            raise ValueError(f"reset got {len(kwargs)} kwargs dicts for {self.num_envs} envs")
        self._episode_games = [self._game_for(kw, i) for i, kw in enumerate(kwargs)]
        self._observations, infos = self.envs.reset(self._episode_games)
        self._tasks = [task_from_intro(obs, g.path) for obs, g in zip(self._observations, self._episode_games)]
        self._memory = [[] for _ in range(self.num_envs)]
        self._dones = [False] * self.num_envs
        self._infos = infos
        if self.visual is not None:
            self.visual.reset()
        self._prompts = [self._build_prompt(i) for i in range(self.num_envs)]
        self._render_history()
        return self._observation(), [dict(info) for info in infos]

    def step(self, text_actions: list[str | None]) -> tuple[Observation, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        if len(text_actions) != self.num_envs:
            raise ValueError(f"step got {len(text_actions)} texts for {self.num_envs} envs")
        if not self._dones:
            raise RuntimeError("step called before reset")
        active = [i for i, text in enumerate(text_actions) if text is not None]
        for i, text in enumerate(text_actions):
            if text is None and not self._dones[i]:
                raise ValueError(f"env {i} is still playing; pass its model output instead of None")
            if text is not None and self._dones[i]:
                raise ValueError(f"env {i}'s episode is over; pass None for it")
            if text is not None and not isinstance(text, str):
                raise TypeError(f"env {i}: model output must be a str, got {type(text).__name__}")
        actions, valids = self.projection([text_actions[i] for i in active])
        extra: dict[int, dict[str, Any]] = {i: {} for i in active}
        if self.visual is not None:
            valids = [self.visual.read_compression(i, text_actions[i], extra[i]) and v for i, v in zip(active, valids)]
        commands: list[str | None] = [None] * self.num_envs
        for i, action in zip(active, actions):
            commands[i] = action
        observations, rewards, dones, infos = self.envs.step(commands)
        for i, action, valid in zip(active, actions, valids):
            self._memory[i].append((self._observations[i], action))
            self._observations[i] = observations[i]
            self._dones[i] = dones[i]
            self._infos[i] = {**infos[i], **extra[i], "is_action_valid": bool(valid)}
            self._prompts[i] = self._build_prompt(i)
        self._render_history()
        return (
            self._observation(),
            np.asarray(rewards, dtype=np.float32),
            np.asarray(self._dones, dtype=bool),
            [dict(info) for info in self._infos],
        )

    def task_category(self, env_idx: int) -> str:
        return self._episode_games[env_idx].task_type

    def close(self) -> None:
        self.envs.close()
        if self.visual is not None:
            self.visual.close()

    def rollout_stats(self) -> dict[str, float]:
        return self.visual.stats() if self.visual is not None else {}

    def _observation(self) -> Observation:
        images = None if self._images is None else list(self._images)
        return Observation(text=list(self._prompts), image=images, anchor=list(self._observations))

    def _window(self, i: int) -> list[tuple[str, str]]:
        return self._memory[i][-self.history_length :] if self.history_length > 0 else []

    def _render_history(self) -> None:
        if self.visual is not None:
            self._images = self.visual.images([
                [] if self._dones[i] else
                [flatten(ALFWORLD_HISTORY_ENTRY.format(observation=o, action=a)) for o, a in self._window(i)]
                for i in range(self.num_envs)])

    def _build_prompt(self, i: int) -> str:
        skill_text = self.skill_context_fn(self.task_category(i)).strip("\n")
        window = self._window(i)
        fields = dict(
            task=self._tasks[i],
            skill_context=f"{skill_text}\n\n" if skill_text else "",
            current_step=len(self._memory[i]) + 1,
            observation=self._observations[i],
            admissible_actions=", ".join(f"'{c}'" for c in self._infos[i]["admissible_commands"]),
        )
        if self.visual is not None:
            template = ALFWORLD_VISUAL_LATER_STEP_TEMPLATE if window else ALFWORLD_VISUAL_FIRST_STEP_TEMPLATE
            prompt = template.format(**fields, steps_taken=len(self._memory[i]), history_count=len(window))
            return prompt + self.visual.instruction(i, first_step=not window)
        if not window:
            return ALFWORLD_FIRST_STEP_TEMPLATE.format(**fields)
        history = "\n".join(ALFWORLD_HISTORY_ENTRY.format(observation=o, action=a) for o, a in window)
        return ALFWORLD_LATER_STEP_TEMPLATE.format(
            **fields, history=history, steps_taken=len(self._memory[i]), history_count=len(window)
        )


def _seed_of(kwargs: dict[str, Any], env_idx: int) -> int:
    seed = kwargs.get("seed") if isinstance(kwargs, dict) else None
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise ValueError(f"reset kwargs of env {env_idx} need an int 'seed' (group copies share it), got {kwargs!r}")
    return int(seed)


def split_games(env_cfg: Any, split: str) -> list[GameSpec]:
    """The games of ``split`` under ``env.alfworld.data_path`` / ``env.alfworld.eval_dataset``."""
    return list_games(data_root(env_cfg.alfworld.data_path), split_folder(split, env_cfg.alfworld.eval_dataset))


def make_manager(env_cfg: Any, split: str, num_envs: int,
                 visual: VisualContext | None = None) -> AlfworldEnvironmentManager:
    """Build the manager for ``split`` from the ``env`` config section (see ``ppo_trainer.yaml``)."""
    return build_manager(env_cfg, split_games(env_cfg, split), num_envs, visual)


def evaluation_tasks(env_cfg: Any, split: str, slots: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every game of the evaluation split once (``{"gamefile": path}``), whatever the number of task slots:
    140 for valid_seen, 134 for valid_unseen (prepare.py's slots are placeholders). Slots that name a
    ``gamefile`` pin the evaluation to those games instead."""
    pinned = [slot["gamefile"] for slot in slots if slot.get("gamefile")]
    paths = list(dict.fromkeys(pinned)) or [game.path for game in split_games(env_cfg, split)]
    return [{"gamefile": path} for path in paths]


def ray_workers(env_cfg: Any, num_envs: int) -> tuple[int, float]:
    """(Ray actors, CPUs each) that ``num_envs`` envs run on (:func:`worker_layout`), for the resource plan."""
    return worker_layout(num_envs, float(env_cfg.resources_per_worker.num_cpus), env_cfg.get("num_workers"))


def build_manager(env_cfg: Any, games: Sequence[GameSpec], num_envs: int,
                  visual: VisualContext | None = None) -> AlfworldEnvironmentManager:
    """The trainer's manager over an explicit game list (``check_data`` replays any data folder with it)."""
    envs = AlfworldEnvs(
        num_envs=num_envs,
        max_steps=int(env_cfg.max_steps),
        num_cpus_per_env=float(env_cfg.resources_per_worker.num_cpus),
        step_timeout_s=float(env_cfg.step_timeout_s),
        num_workers=env_cfg.get("num_workers"),
    )
    return AlfworldEnvironmentManager(envs, games, history_length=int(env_cfg.history_length), visual=visual)
