"""The skill context: the skill text placed in every step's prompt (SPEC §1).

For an episode of task category ``c`` with active skill files ``A`` the context is::

    <GENERAL SKILLS file text>
    <blank line>
    <text of the file mapped to c, if that file is in A>
    <blank line>

i.e. the texts joined by one blank line, with one blank line after the last; the empty string when
no file is active (budget 0, or skills off). "All skills" (the static baseline, the final test's
``test/full_skill``) means the same shape with every file active, as in the reference: general skills
plus the category's own file (:func:`active_context_fn` with ``library.names``, or
:func:`sectioned_context_fn` for one merged file). ``env.skill_scope=all_files`` instead gives every
file to every category (:func:`full_context_fn`, :func:`static_context_fn`).

Managers receive the context as a ``Callable[[str], str]`` (category -> text) through
``set_skill_context_fn``; the callables here are small frozen dataclasses, so they pickle and compare by
value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agent_system.skills.library import GENERAL_SKILLS, SkillLibrary, load_skill_file

ContextFn = Callable[[str], str]
"""Same shape as ``agent_system.environments.base.SkillContextFn``: category -> skill text."""


def _as_context(texts: Iterable[str]) -> str:
    parts = list(texts)
    return "\n\n".join(parts) + "\n\n" if parts else ""


def merged_text(library: SkillLibrary) -> str:
    """Every file of the mapping, ``general_skills`` first, as one skill-file text."""
    return "\n\n".join(skill_file.text for skill_file in library.files.values())


@dataclass(frozen=True)
class FixedContext:
    """The same skill text for every category (static baseline, full-skill test)."""

    text: str

    def __call__(self, category: str) -> str:
        return self.text


def check_active_set(library: SkillLibrary, active: Iterable[str]) -> None:
    """An active set is empty (no skills) or holds ``general_skills`` plus known files."""
    active = set(active)
    unknown = sorted(active - set(library.names))
    if unknown:
        raise ValueError(
            f"active skills {unknown} are not in {library.mapping_path}; choose from {list(library.names)}")
    if active and GENERAL_SKILLS not in active:
        raise ValueError(
            f"an active skill set must contain '{GENERAL_SKILLS}' (got {sorted(active)}); "
            "add it or use an empty set for no skills")


@dataclass(frozen=True)
class ActiveSkillContext:
    """General skills plus the category's own file, limited to the curriculum's active set."""

    library: SkillLibrary
    active: frozenset[str]

    def __post_init__(self) -> None:
        check_active_set(self.library, self.active)

    def __call__(self, category: str) -> str:
        if not self.active:
            return ""
        names = [GENERAL_SKILLS]
        own = self.library.skill_for(category)
        if own in self.active:
            names.append(own)
        return _as_context(self.library.files[name].text for name in names)


def active_context_fn(library: SkillLibrary, active: Iterable[str]) -> ContextFn:
    """Context for the curriculum's active file set (or all files: ``library.names``)."""
    return ActiveSkillContext(library, frozenset(active))


@dataclass(frozen=True)
class CategoryContext:
    """A fixed text per category; categories without an entry get ``default``."""

    by_category: Mapping[str, str]
    default: str

    def __call__(self, category: str) -> str:
        return self.by_category.get(category, self.default)


def sectioned_context_fn(skill_file: Path | str, library: SkillLibrary) -> ContextFn:
    """The static baseline from one skill file holding every file's sections (e.g. ``all_skills.md``): the
    ``general_skills`` sections plus the sections of the file mapped to the category. ``library`` (the
    skill mapping) says which file each section belongs to; a section it does not know is an error."""
    static = load_skill_file(skill_file)
    owner = {section.name: name for name, file in library.files.items() for section in file.sections}
    unknown = [section.name for section in static.sections if section.name not in owner]
    if unknown:
        raise ValueError(
            f"{skill_file}: section(s) {unknown} are in no file of {library.mapping_path}, so no category would "
            "get them; add them to a mapped skill file (then `python -m agent_system.skills.merge`), or set "
            "env.skill_scope=all_files to give the whole file to every category")

    def text_of(names: list[str | None]) -> str:
        return _as_context(s.text for name in names for s in static.sections if owner[s.name] == name)

    per_category = {category: text_of([GENERAL_SKILLS, name]) for category, name in library.task_to_skill.items()}
    return CategoryContext(per_category, text_of([GENERAL_SKILLS]))


def full_context_fn(library: SkillLibrary) -> ContextFn:
    """All files of the mapping merged, general first, for every category (``env.skill_scope=all_files``)."""
    return FixedContext(_as_context([merged_text(library)]))


def static_context_fn(skill_file: Path | str) -> ContextFn:
    """One whole skill file for every category (``env.use_skill=True`` with ``env.skill_scope=all_files``)."""
    return FixedContext(_as_context([load_skill_file(skill_file).text]))
