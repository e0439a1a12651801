"""The SKILL0 dynamic skill curriculum, as pure functions plus one small stateful class (SPEC §1).

Every ``trainer.test_freq`` steps the policy is validated twice on the same tasks, with the active
skills and with none. For a task category c, Δ_c = success_with(c) − success_without(c); a skill
file's Δ is the mean Δ_c over the measured categories mapped to it. Files with Δ < 0 are dropped
(Δ = 0 passes), the rest are sorted by Δ (descending, ties by name) and the new active set is
``general_skills`` + the top (M − 1), where the budget M comes from
``env.curriculum_learning.max_set_schedule`` for the current phase; M = 0 means no skills at all.
A pruned file returns as soon as its Δ is ≥ 0 again and it fits in the budget.

Nothing here touches Ray, the trainer or an environment: the trainer calls
:meth:`SkillCurriculum.update` after its paired validations and pushes
:meth:`SkillCurriculum.context_fn` to its environment managers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from agent_system.skills.context import ActiveSkillContext, check_active_set
from agent_system.skills.library import GENERAL_SKILLS, SkillLibrary, load_skill_library

_DELTA_DECIMALS = 12  # success rates are fractions; rounding makes equal rates give Δ == 0 exactly
_STATE_VERSION = 1


class CurriculumConfigError(ValueError):
    """The schedule does not fit the run's step counts (see the message for the fix)."""


# --------------------------------------------------------------------------- phases


def _validations_per_phase(test_freq: int, total_steps: int, n_phases: int) -> int:
    if test_freq <= 0 or total_steps <= 0 or n_phases <= 0:
        raise CurriculumConfigError(
            f"trainer.test_freq={test_freq}, trainer.total_training_steps={total_steps} and the length "
            f"of env.curriculum_learning.max_set_schedule ({n_phases}) must all be positive")
    validations = total_steps // test_freq
    if validations == 0 or validations % n_phases:
        raise CurriculumConfigError(
            f"env.curriculum_learning.max_set_schedule has {n_phases} phases, which must evenly divide "
            f"the {validations} validations (trainer.total_training_steps={total_steps} // "
            f"trainer.test_freq={test_freq}); give the schedule a number of entries that divides "
            f"{validations}, or change trainer.total_training_steps / trainer.test_freq so that their "
            f"quotient is a positive multiple of {n_phases}")
    return validations // n_phases


def validation_phase(global_step: int, test_freq: int, total_steps: int, n_phases: int) -> int:
    """Index of the schedule phase whose budget the validation at ``global_step`` applies.

    With V = total_steps // test_freq validations split evenly over ``n_phases`` phases, the
    validation at step g ≥ 1 uses phase min(((g − 1) // test_freq) // (V // n_phases), n_phases − 1).
    The validation before training (g = 0) uses phase 0. The reference implementation maps g = 0 to
    the *last* phase ((−1 // test_freq) is −1, and −1 // k is −1, i.e. the last list entry), which
    empties the skill set before step 1; that defect is fixed here.

    Example: 180 steps, test_freq 10, 3 phases -> phase 0 for g = 0..60 (its budget governs steps
    1-70), phase 1 for g = 70..120 (steps 71-130), phase 2 for g ≥ 130 (steps 131-180).
    """
    per_phase = _validations_per_phase(test_freq, total_steps, n_phases)
    if global_step < 0:
        raise ValueError(f"global_step must be >= 0, got {global_step}")
    if global_step == 0:
        return 0
    return min(((global_step - 1) // test_freq) // per_phase, n_phases - 1)


@dataclass(frozen=True)
class CurriculumSchedule:
    """``env.curriculum_learning.max_set_schedule`` with the run's step counts, checked up front."""

    max_set_schedule: tuple[int, ...]
    total_steps: int
    test_freq: int

    def __post_init__(self) -> None:
        schedule = tuple(self.max_set_schedule)
        if not schedule or not all(isinstance(m, int) and m >= 0 for m in schedule):
            raise CurriculumConfigError(
                f"env.curriculum_learning.max_set_schedule={list(schedule)} must be a non-empty list of "
                "integers >= 0, e.g. [6, 3, 0]")
        object.__setattr__(self, "max_set_schedule", schedule)
        _validations_per_phase(self.test_freq, self.total_steps, len(schedule))

    def phase(self, global_step: int) -> int:
        return validation_phase(global_step, self.test_freq, self.total_steps, len(self.max_set_schedule))

    def budget(self, global_step: int) -> int:
        """M, the number of skill files the validation at ``global_step`` may keep active."""
        return self.max_set_schedule[self.phase(global_step)]


# --------------------------------------------------------------------------- Δ and selection


def _check_rates(rates: Mapping[str, float], which: str) -> None:
    for category, rate in rates.items():
        if not isinstance(rate, (int, float)) or not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"{which}[{category!r}]={rate!r} is not a success rate in [0, 1]")


def category_deltas(with_success: Mapping[str, float], without_success: Mapping[str, float]) -> dict[str, float]:
    """Δ_c = success_with(c) − success_without(c) for every category of the paired validations."""
    _check_rates(with_success, "with_success")
    _check_rates(without_success, "without_success")
    if set(with_success) != set(without_success):
        only_with = sorted(set(with_success) - set(without_success))
        only_without = sorted(set(without_success) - set(with_success))
        raise ValueError(
            f"the paired validations measured different categories (only with skills: {only_with}, only "
            f"without: {only_without}); run both validations on the same tasks")
    return {c: round(with_success[c] - without_success[c], _DELTA_DECIMALS) for c in sorted(with_success)}


def file_deltas(library: SkillLibrary, category_delta: Mapping[str, float]) -> dict[str, float]:
    """Mean Δ of the measured categories mapped to each ranked file.

    Categories that were not measured are ignored; a file none of whose categories was measured
    gets no Δ and is not eligible in this round. ``general_skills`` is never ranked.
    """
    deltas = {}
    for name in library.task_file_names:
        measured = [category_delta[c] for c in library.categories_of(name) if c in category_delta]
        if measured:
            deltas[name] = round(sum(measured) / len(measured), _DELTA_DECIMALS)
    return deltas


def select_active(file_delta: Mapping[str, float], budget: int) -> tuple[str, ...]:
    """``general_skills`` + the top (budget − 1) files with Δ ≥ 0 (Δ descending, ties by name).

    budget 0 -> no skills; budget 1 -> general skills only.
    """
    if budget < 0:
        raise ValueError(f"the skill budget must be >= 0, got {budget}")
    if budget == 0:
        return ()
    eligible = sorted(
        (name for name, delta in file_delta.items() if delta >= 0 and name != GENERAL_SKILLS),
        key=lambda name: (-file_delta[name], name),
    )
    return (GENERAL_SKILLS, *eligible[: budget - 1])


# --------------------------------------------------------------------------- the curriculum


@dataclass(frozen=True)
class CurriculumUpdate:
    """What one paired validation decided (kept in the history and in checkpoints)."""

    global_step: int
    budget: int
    active: tuple[str, ...]
    category_delta: dict[str, float] = field(default_factory=dict)
    file_delta: dict[str, float] = field(default_factory=dict)
    with_success: dict[str, float] = field(default_factory=dict)
    without_success: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["active"] = list(self.active)
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> "CurriculumUpdate":
        expected = set(cls.__dataclass_fields__)
        if not isinstance(state, Mapping) or set(state) != expected:
            raise ValueError(f"a curriculum history entry needs exactly the keys {sorted(expected)}, got {state!r}")
        return cls(
            global_step=int(state["global_step"]),
            budget=int(state["budget"]),
            active=tuple(state["active"]),
            **{key: {str(k): float(v) for k, v in dict(state[key]).items()}
               for key in ("category_delta", "file_delta", "with_success", "without_success")},
        )


class SkillCurriculum:
    """The active skill set across training, with its history of Δ per validation.

    The initial active set is every file of the mapping; the phase-0 budget is applied at the
    first :meth:`update` (normally the validation before training, g = 0).
    """

    def __init__(self, library: SkillLibrary, schedule: CurriculumSchedule):
        self.library = library
        self.schedule = schedule
        self._active: tuple[str, ...] = library.names
        self._history: list[CurriculumUpdate] = []

    @classmethod
    def from_config(
        cls,
        skill_mapping_file: Path | str,
        max_set_schedule: Sequence[int],
        total_steps: int,
        test_freq: int,
        categories: Sequence[str] | None = None,
    ) -> "SkillCurriculum":
        """Build from ``env.curriculum_learning.*`` and ``trainer.*`` values."""
        schedule = CurriculumSchedule(tuple(max_set_schedule), total_steps, test_freq)
        return cls(load_skill_library(skill_mapping_file, categories), schedule)

    @property
    def active(self) -> tuple[str, ...]:
        return self._active

    @property
    def history(self) -> tuple[CurriculumUpdate, ...]:
        return tuple(self._history)

    def budget(self, global_step: int) -> int:
        return self.schedule.budget(global_step)

    def update(
        self, global_step: int, with_success: Mapping[str, float], without_success: Mapping[str, float]
    ) -> CurriculumUpdate:
        """Apply one paired validation (per-category success rates with / without skills)."""
        if self._history and global_step < self._history[-1].global_step:
            raise ValueError(
                f"curriculum update at step {global_step} comes after one at step "
                f"{self._history[-1].global_step}; the curriculum state does not match this run")
        budget = self.budget(global_step)
        by_category = category_deltas(with_success, without_success)
        by_file = file_deltas(self.library, by_category)
        record = CurriculumUpdate(
            global_step=global_step,
            budget=budget,
            active=select_active(by_file, budget),
            category_delta=by_category,
            file_delta=by_file,
            with_success={c: float(with_success[c]) for c in sorted(with_success)},
            without_success={c: float(without_success[c]) for c in sorted(without_success)},
        )
        self._active = record.active
        self._history.append(record)
        return record

    def context_fn(self) -> ActiveSkillContext:
        """Category -> skill text for the current active set (for ``set_skill_context_fn``)."""
        return ActiveSkillContext(self.library, frozenset(self._active))

    def metrics(self) -> dict[str, float | int | str]:
        """``val/curriculum/*`` metrics of the latest update (set sizes only, before any update)."""
        metrics: dict[str, float | int | str] = {}
        if self._history:
            last = self._history[-1]
            for category, delta in last.category_delta.items():
                metrics[f"val/curriculum/delta/{category}"] = delta
                metrics[f"val/curriculum/with_skill/{category}_success_rate"] = last.with_success[category]
                metrics[f"val/curriculum/without_skill/{category}_success_rate"] = last.without_success[category]
            for name, delta in last.file_delta.items():
                metrics[f"val/curriculum/skill_delta/{name}"] = delta
        metrics["val/curriculum/active_skill_count"] = len(self._active)
        metrics["val/curriculum/active_skills"] = ",".join(self._active)
        metrics["val/curriculum/max_set"] = self._history[-1].budget if self._history else self.budget(0)
        return metrics

    # ----------------------------------------------------------------------- checkpoints

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state: the active set and the history of updates."""
        return {
            "version": _STATE_VERSION,
            "active": list(self._active),
            "history": [record.to_dict() for record in self._history],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output, checking every file name against this mapping."""
        if (
            not isinstance(state, Mapping)
            or set(state) != {"version", "active", "history"}
            or state["version"] != _STATE_VERSION
            or not isinstance(state["active"], list)
            or not isinstance(state["history"], list)
        ):
            raise ValueError(
                f"curriculum state must be the dict state_dict() returns (version {_STATE_VERSION}, "
                f"'active' list, 'history' list), got {str(state)[:200]}")
        history = [CurriculumUpdate.from_dict(entry) for entry in state["history"]]
        active = tuple(state["active"])
        try:
            for record in history:
                check_active_set(self.library, record.active)
                check_active_set(self.library, [GENERAL_SKILLS, *record.file_delta])
            check_active_set(self.library, active)
        except ValueError as err:
            raise ValueError(
                f"curriculum state does not match this skill mapping ({err}); resume with the skill "
                "mapping the checkpoint was trained with") from err
        self._active = active
        self._history = history
