"""Skills for in-context RL (SKILL0): skill files, skill contexts and the dynamic curriculum.

- :mod:`library`: parse and validate skill files and ``skill_mapping.json``.
- :mod:`context`: the skill text for a prompt (active set, static file, full merge).
- :mod:`curriculum`: phases, Δ per file, selection, and :class:`SkillCurriculum`.
- CLIs: ``python -m agent_system.skills.{lint,merge,report}``.
"""

from agent_system.skills.context import active_context_fn, full_context_fn, static_context_fn
from agent_system.skills.curriculum import (
    CurriculumConfigError,
    CurriculumSchedule,
    CurriculumUpdate,
    SkillCurriculum,
    validation_phase,
)
from agent_system.skills.library import (
    GENERAL_SKILLS,
    SkillFile,
    SkillLibrary,
    SkillValidationError,
    load_skill_file,
    load_skill_library,
)

__all__ = [
    "GENERAL_SKILLS",
    "CurriculumConfigError",
    "CurriculumSchedule",
    "CurriculumUpdate",
    "SkillCurriculum",
    "SkillFile",
    "SkillLibrary",
    "SkillValidationError",
    "active_context_fn",
    "full_context_fn",
    "load_skill_file",
    "load_skill_library",
    "static_context_fn",
    "validation_phase",
]
