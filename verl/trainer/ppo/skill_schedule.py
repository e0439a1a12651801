"""Which skills the prompts carry during a run: a fixed file, or the SKILL0 dynamic curriculum.

The curriculum's math lives in :mod:`agent_system.skills.curriculum`; this module is the glue the
trainer calls at each validation:

1. play the validation tasks twice, *paired* (same tasks, env seeds and sampling seeds): with the
   active skills and with none;
2. per task category, Δ = success_with − success_without; update the curriculum (filter, rank, budget);
3. push the new skill context to the train and val managers.

Fixes over the reference implementation (SPEC §1): the validation before training uses phase 0; the two
runs are paired; the curriculum state is checkpointed and restored on resume.

"All skills" — the static baseline (``env.use_skill``) and the final test's ``test/full_skill`` — gives
each episode the general skills plus its category's file, as the reference does
(``env.skill_scope=category``); ``env.skill_scope=all_files`` gives every file to every category.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from agent_system.environments import env_family
from agent_system.environments.base import EnvironmentManagerBase, SkillContextFn, no_skills
from agent_system.environments.categories import TASK_CATEGORIES
from agent_system.multi_turn_rollout.metrics import evaluation_metrics, success_by_category, success_by_tag
from agent_system.skills.context import active_context_fn, full_context_fn, sectioned_context_fn, static_context_fn
from agent_system.skills.curriculum import CurriculumConfigError, SkillCurriculum
from agent_system.skills.library import MAPPING_FILE_NAME, load_skill_library
from verl.trainer.config.validate import ConfigError


def _prefixed(prefix: str, rates: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in rates.items()}


class StaticSkills:
    """``env.use_skill=True``: one skill file in every prompt (the static baseline), no curriculum."""

    def __init__(self, context: SkillContextFn):
        self.context = context

    def apply(self, *managers: EnvironmentManagerBase) -> None:
        for m in managers:
            m.set_skill_context_fn(self.context)

    def validate(self, trainer: Any, step: int) -> dict[str, float]:
        result = trainer.evaluate(trainer.envs.val, trainer.val_tasks, self.context, f"val_step_{step}")
        return _prefixed("val", evaluation_metrics(result))

    def final_test(self, trainer: Any, envs: EnvironmentManagerBase) -> dict[str, float]:
        return _final_test(trainer, envs, self.context)

    def state_dict(self) -> None:
        return None

    def load_state_dict(self, state: Any) -> None:
        pass


class CurriculumSkills:
    """The SKILL0 dynamic curriculum with paired with/without-skill validations."""

    def __init__(self, curriculum: SkillCurriculum, full_skill: SkillContextFn):
        """``full_skill``: the context of the final test's ``test/full_skill`` run (see ``env.skill_scope``)."""
        self.curriculum = curriculum
        self.full_skill = full_skill
        self._managers: tuple[EnvironmentManagerBase, ...] = ()

    def apply(self, *managers: EnvironmentManagerBase) -> None:
        self._managers = managers
        context = self.curriculum.context_fn()
        for m in managers:
            m.set_skill_context_fn(context)

    def validate(self, trainer: Any, step: int) -> dict[str, float]:
        envs, tasks = trainer.envs.val, trainer.val_tasks
        with_skill = trainer.evaluate(envs, tasks, self.curriculum.context_fn(), f"val_step_{step}_with_skill")
        without = trainer.evaluate(envs, tasks, no_skills, f"val_step_{step}_without_skill")
        self.curriculum.update(step, success_by_category(with_skill), success_by_category(without))
        self.apply(*self._managers)
        metrics = _prefixed("val", evaluation_metrics(with_skill))
        metrics.update(_prefixed("val/curriculum/with_skill", success_by_tag(with_skill.won, with_skill.metric_tags)))
        metrics.update(_prefixed("val/curriculum/without_skill", success_by_tag(without.won, without.metric_tags)))
        metrics.update(self.curriculum.metrics())
        return metrics

    def final_test(self, trainer: Any, envs: EnvironmentManagerBase) -> dict[str, float]:
        return _final_test(trainer, envs, self.full_skill)

    def state_dict(self) -> dict[str, Any]:
        return self.curriculum.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.curriculum.load_state_dict(state)


def _final_test(trainer: Any, envs: EnvironmentManagerBase, full: SkillContextFn) -> dict[str, float]:
    """``test/full_skill/*`` (all skills, see ``env.skill_scope``) and ``test/no_skill/*`` on the same tasks."""
    metrics = {}
    for name, context in (("full_skill", full), ("no_skill", no_skills)):
        result = trainer.evaluate(envs, trainer.test_tasks, context, f"test_{name}")
        metrics.update(_prefixed(f"test/{name}", evaluation_metrics(result)))
    return metrics


def build_skill_schedule(cfg: DictConfig, total_steps: int) -> StaticSkills | CurriculumSkills | None:
    """The run's skill schedule from ``env.use_skill`` / ``env.curriculum_learning`` (None = no skills)."""
    env = cfg.env
    if env.use_skill:
        return StaticSkills(_static_context(env))
    cur = env.curriculum_learning
    if not cur.enable:
        return None
    try:
        curriculum = SkillCurriculum.from_config(
            cur.skill_mapping_file, list(cur.max_set_schedule), total_steps, cfg.trainer.test_freq,
            TASK_CATEGORIES.get(env_family(env.env_name)))
    except CurriculumConfigError as err:
        raise ConfigError(f"invalid config:\n  - {err}") from err
    library = curriculum.library
    if env.skill_scope == "all_files":
        return CurriculumSkills(curriculum, full_context_fn(library))
    return CurriculumSkills(curriculum, active_context_fn(library, library.names))


def _static_context(env: DictConfig) -> SkillContextFn:
    """The static baseline's context: the whole ``env.skill_file`` (``all_files``), or its general sections
    plus the sections of the category's file (``category``), told apart by the skill mapping: beside the
    file, or ``env.curriculum_learning.skill_mapping_file``."""
    if env.skill_scope == "all_files":
        return static_context_fn(env.skill_file)
    mapping = env.curriculum_learning.skill_mapping_file or Path(env.skill_file).expanduser().parent / MAPPING_FILE_NAME
    if not Path(mapping).expanduser().is_file():
        raise ConfigError(
            f"invalid config:\n  - env.skill_scope=category: the static baseline gives each category the general "
            f"skills plus its own file, so it needs the skill mapping; {mapping} does not exist. Put "
            f"{MAPPING_FILE_NAME} beside env.skill_file, set env.curriculum_learning.skill_mapping_file, or set "
            "env.skill_scope=all_files to give the whole file to every category")
    try:
        library = load_skill_library(Path(mapping).expanduser(), TASK_CATEGORIES.get(env_family(env.env_name)))
        return sectioned_context_fn(Path(env.skill_file).expanduser(), library)
    except ValueError as err:  # SkillValidationError included
        raise ConfigError(f"invalid config:\n  - env.skill_file / skill mapping: {err}") from err
