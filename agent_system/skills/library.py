"""Skill files and skill mappings: parsing and validation (SPEC §1).

A *skill file* is markdown made of sections, each opened by a header line ``### NAME ###``
(e.g. ``### GENERAL SKILLS ###``, ``### TASK: heat ###``) and followed by a short list of
strategies. A *skill mapping* (``skills/<env>/skill_mapping.json``) names the files and says
which file serves which task category::

    {"skill_files": {"general_skills": "general_skills.md", "heat": "heat.md"},
     "task_to_skill": {"pick_heat_then_place_in_recep": "heat"}}

``general_skills`` is reserved: it is always the first file while any skill budget remains.

Validation collects *every* problem (file, line, what is wrong and how to fix it) so that the
linter can print them all at once; :func:`load_skill_library` raises them together as one
:class:`SkillValidationError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENERAL_SKILLS = "general_skills"
MAPPING_FILE_NAME = "skill_mapping.json"
_MAPPING_KEYS = ("skill_files", "task_to_skill")
_HEADER = re.compile(r"^###\s*(?P<name>.+?)\s*###\s*$")


@dataclass(frozen=True)
class SkillIssue:
    """One validation problem, printed as ``path:line: message``."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else str(self.path)
        return f"{where}: {self.message}"


class SkillValidationError(ValueError):
    """Raised with every :class:`SkillIssue` found in a skill file or skill folder."""

    def __init__(self, issues: Sequence[SkillIssue]):
        self.issues = tuple(issues)
        listing = "\n".join(f"  {issue}" for issue in self.issues)
        super().__init__(f"{len(self.issues)} skill problem(s):\n{listing}")


@dataclass(frozen=True)
class SkillSection:
    """One ``### NAME ###`` section; ``line`` is the 1-based line of its header."""

    name: str
    body: str
    line: int

    @property
    def text(self) -> str:
        return f"### {self.name} ###\n{self.body}"


@dataclass(frozen=True)
class SkillFile:
    """A parsed skill file. ``text`` is its canonical form: sections separated by one blank line."""

    name: str
    path: Path
    sections: tuple[SkillSection, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(section.text for section in self.sections)


@dataclass(frozen=True)
class SkillLibrary:
    """A validated skill mapping with its parsed files (``general_skills`` first); treat as read-only."""

    mapping_path: Path
    files: Mapping[str, SkillFile]
    task_to_skill: Mapping[str, str]

    @property
    def folder(self) -> Path:
        return self.mapping_path.parent

    @property
    def names(self) -> tuple[str, ...]:
        """All file names, ``general_skills`` first, then in mapping order."""
        return tuple(self.files)

    @property
    def task_file_names(self) -> tuple[str, ...]:
        """The files the curriculum ranks (everything but ``general_skills``)."""
        return tuple(name for name in self.files if name != GENERAL_SKILLS)

    def skill_for(self, category: str) -> str | None:
        """The file mapped to a task category, or None for an unmapped category."""
        return self.task_to_skill.get(category)

    def categories_of(self, name: str) -> tuple[str, ...]:
        """The task categories mapped to file ``name``."""
        return tuple(cat for cat, file_name in self.task_to_skill.items() if file_name == name)


# --------------------------------------------------------------------------- skill files


def parse_skill_text(text: str, path: Path) -> tuple[tuple[SkillSection, ...], list[SkillIssue]]:
    """Split markdown into sections; returns the valid sections and every problem found."""
    issues: list[SkillIssue] = []
    sections: list[SkillSection] = []
    first_line_by_name: dict[str, int] = {}
    stray_line: int | None = None  # first non-blank line before any header
    header: tuple[str, int] | None = None
    body: list[str] = []
    saw_malformed_header = False

    def close_section() -> None:
        if header is None:
            return
        name, line = header
        text_body = "\n".join(body).strip("\n")
        if name in first_line_by_name:
            issues.append(SkillIssue(path, line, (
                f"section '{name}' repeats the header of line {first_line_by_name[name]}; "
                "merge the two sections or rename one")))
        elif not text_body.strip():
            issues.append(SkillIssue(path, line, (
                f"section '{name}' is empty; add a few strategy bullets under it or delete the header")))
        else:
            sections.append(SkillSection(name, text_body, line))
        first_line_by_name.setdefault(name, line)

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if line.startswith("###") and not line.startswith("####"):
            match = _HEADER.match(line)
            if match is None or not match["name"].strip("# "):
                issues.append(SkillIssue(path, number, (
                    f"malformed section header {line!r}; write it as '### NAME ###'")))
                saw_malformed_header = True
                continue
            close_section()
            header, body = (match["name"], number), []
        elif header is None:
            if line.strip() and stray_line is None:
                stray_line = number
        else:
            body.append(line)
    close_section()

    if header is None and not saw_malformed_header:
        issues.append(SkillIssue(path, None, (
            "no sections found; start the file with a header line such as '### GENERAL SKILLS ###' "
            "followed by strategy bullets")))
    elif header is not None and stray_line is not None:
        issues.append(SkillIssue(path, stray_line, (
            "text before the first '### NAME ###' header; move it under a section or delete it")))
    return tuple(sections), issues


def _read_utf8(path: Path) -> tuple[str | None, list[SkillIssue]]:
    """Read a text file; a missing file or non-UTF-8 bytes become issues naming the line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, [SkillIssue(path, None, "file not found; create it or fix the path that names it")]
    except OSError as err:
        return None, [SkillIssue(path, None, f"cannot read the file ({err.strerror}); check its permissions")]
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), []
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        return None, [SkillIssue(path, line, (
            f"not valid UTF-8 (byte 0x{data[err.start]:02x}); re-save the file with UTF-8 encoding"))]


def check_skill_file(path: Path | str, name: str | None = None) -> tuple[SkillFile | None, list[SkillIssue]]:
    """Parse one skill file; returns (file or None when invalid, issues)."""
    path = Path(path)
    text, issues = _read_utf8(path)
    if text is None:
        return None, issues
    sections, issues = parse_skill_text(text, path)
    if issues:
        return None, issues
    return SkillFile(name or path.stem, path, sections), []


def load_skill_file(path: Path | str, name: str | None = None) -> SkillFile:
    """Parse one skill file (e.g. the single file of ``env.skill_file``) or raise every problem."""
    skill_file, issues = check_skill_file(path, name)
    if skill_file is None:
        raise SkillValidationError(issues)
    return skill_file


# --------------------------------------------------------------------------- mappings


def mapping_path_of(location: Path | str) -> Path:
    """A skill folder or its mapping file -> the mapping file's path."""
    location = Path(location)
    return location / MAPPING_FILE_NAME if location.is_dir() else location


def _line_of_key(text: str, key: str, after: str | None = None) -> int | None:
    """Best-effort 1-based line of ``"key":`` in JSON text (searched after ``"after":`` if given)."""
    start = 0
    if after is not None:
        found = re.search(re.escape(json.dumps(after)) + r"\s*:", text)
        start = found.end() if found else 0
    found = re.compile(re.escape(json.dumps(key)) + r"\s*:").search(text, start)
    return text.count("\n", 0, found.start()) + 1 if found else None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


def _parse_mapping_json(path: Path) -> tuple[dict[str, Any] | None, str, list[SkillIssue]]:
    """Load the mapping JSON and check its shape (two objects of string -> string)."""
    text, issues = _read_utf8(path)
    if text is None:
        return None, "", issues
    try:
        data = json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as err:
        return None, text, [SkillIssue(path, err.lineno, f"bad JSON ({err.msg}, column {err.colno}); fix the syntax")]
    except ValueError as err:
        return None, text, [SkillIssue(path, None, f"bad JSON ({err}); keep one entry per key")]
    if not isinstance(data, dict):
        return None, text, [SkillIssue(path, 1, (
            "the mapping must be a JSON object with 'skill_files' and 'task_to_skill'"))]
    for key in data:
        if key not in _MAPPING_KEYS:
            issues.append(SkillIssue(path, _line_of_key(text, key), (
                f"unknown key {key!r}; a mapping has only 'skill_files' and 'task_to_skill'")))
    for key in _MAPPING_KEYS:
        value = data.get(key)
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            issues.append(SkillIssue(path, _line_of_key(text, key), (
                f"'{key}' must be a JSON object of string names to strings, "
                f'e.g. {{"heat": "heat.md"}}')))
    return (None if issues else data), text, issues


def _check_relative_path(folder: Path, rel: str) -> str | None:
    """Why ``rel`` is not a usable path inside ``folder`` (None when it is fine)."""
    if Path(rel).is_absolute():
        return "is an absolute path; give a path relative to the skill folder"
    try:
        (folder / rel).resolve().relative_to(folder.resolve())
    except ValueError:
        return "points outside the skill folder; keep skill files inside it"
    return None


def _check_cross_file_sections(files: Iterable[SkillFile]) -> list[SkillIssue]:
    """The full-skill context merges all files, so section names must be unique across files."""
    owner: dict[str, SkillFile] = {}
    issues = []
    for skill_file in files:
        for section in skill_file.sections:
            first = owner.setdefault(section.name, skill_file)
            if first is not skill_file:
                issues.append(SkillIssue(skill_file.path, section.line, (
                    f"section '{section.name}' also appears in {first.path.name}; the merged "
                    "full-skill context needs unique section names, so rename one")))
    return issues


def check_skill_folder(
    location: Path | str, categories: Sequence[str] | None = None
) -> tuple[SkillLibrary | None, list[SkillIssue]]:
    """Validate a skill mapping and all files it names.

    ``location`` is the skill folder or its ``skill_mapping.json``. ``categories`` (e.g.
    ``TASK_CATEGORIES["alfworld"]``) are the task categories the environment reports; when given,
    every ``task_to_skill`` key must be one of them. Returns (library or None, every issue).
    """
    path = mapping_path_of(location)
    data, text, issues = _parse_mapping_json(path)
    if data is None:
        return None, issues
    folder = path.parent
    skill_files: dict[str, str] = data["skill_files"]
    task_to_skill: dict[str, str] = data["task_to_skill"]

    if GENERAL_SKILLS not in skill_files:
        issues.append(SkillIssue(path, _line_of_key(text, "skill_files"), (
            f"'skill_files' has no '{GENERAL_SKILLS}' entry; add it (it is always the first file)")))

    parsed: dict[str, SkillFile] = {}
    for name in sorted(skill_files, key=lambda n: n != GENERAL_SKILLS):  # general first, stable
        rel = skill_files[name]
        problem = _check_relative_path(folder, rel)
        if problem is not None:
            issues.append(SkillIssue(path, _line_of_key(text, name, after="skill_files"),
                                     f"skill file '{name}' -> {rel!r} {problem}"))
            continue
        skill_file, file_issues = check_skill_file(folder / rel, name)
        issues.extend(file_issues)
        if skill_file is not None:
            parsed[name] = skill_file

    for category, name in task_to_skill.items():
        line = _line_of_key(text, category, after="task_to_skill")
        if categories is not None and category not in categories:
            issues.append(SkillIssue(path, line, (
                f"unknown task category {category!r}; this environment reports: {', '.join(categories)}")))
        if name == GENERAL_SKILLS:
            issues.append(SkillIssue(path, line, (
                f"category {category!r} maps to '{GENERAL_SKILLS}', which is always included; "
                "map it to a task skill file or remove the entry")))
        elif name not in skill_files:
            issues.append(SkillIssue(path, line, (
                f"category {category!r} maps to {name!r}, which is not in 'skill_files'; "
                "add that file or fix the name")))

    used = set(task_to_skill.values())
    for name in skill_files:
        if name != GENERAL_SKILLS and name not in used:
            issues.append(SkillIssue(path, _line_of_key(text, name, after="skill_files"), (
                f"skill file {name!r} is not used by any task category; map a category to it in "
                "'task_to_skill' or remove it")))

    issues.extend(_check_cross_file_sections(parsed.values()))
    if issues:
        return None, issues
    library = SkillLibrary(path, parsed, dict(task_to_skill))
    return library, []


def load_skill_library(location: Path | str, categories: Sequence[str] | None = None) -> SkillLibrary:
    """Load a skill folder (or its mapping file) or raise :class:`SkillValidationError` with every problem."""
    library, issues = check_skill_folder(location, categories)
    if library is None:
        raise SkillValidationError(issues)
    return library
