"""Check a skill folder and show what each file costs in the prompt.

    python -m agent_system.skills.lint skills/alfworld [--env alfworld|search] [--tokenizer PATH]

Exit 0 when the folder is valid, 1 with every problem (``file:line: message``) otherwise. The
environment is taken from the folder name when ``--env`` is omitted. Counts are model tokens with
``--tokenizer`` (a local Hugging Face tokenizer folder), else whitespace-separated words.
A merged ``all_skills.md`` in the folder must match the mapping (see ``agent_system.skills.merge``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from agent_system.environments.categories import TASK_CATEGORIES
from agent_system.skills.context import active_context_fn, full_context_fn
from agent_system.skills.library import SkillIssue, SkillLibrary, check_skill_folder, mapping_path_of
from agent_system.skills.merge import MERGED_FILE_NAME, stale_merged_file

Counter = Callable[[str], int]


def infer_env(folder: Path) -> str:
    """``skills/alfworld`` -> ``alfworld``; a clear error when the name is not an environment."""
    name = mapping_path_of(folder).parent.resolve().name
    if name not in TASK_CATEGORIES:
        raise ValueError(
            f"cannot tell the environment from the folder name {name!r}; pass --env "
            f"({' or '.join(TASK_CATEGORIES)})")
    return name


def lint_folder(folder: Path, env: str) -> tuple[SkillLibrary | None, list[SkillIssue]]:
    """Validate the mapping against ``env``'s task categories, plus a merged file if present."""
    library, issues = check_skill_folder(folder, TASK_CATEGORIES[env])
    if library is not None:
        merged = library.folder / MERGED_FILE_NAME
        problem = stale_merged_file(library, merged) if merged.exists() else None
        if problem:
            issues.append(SkillIssue(merged, None, (
                f"out of date ({problem}); regenerate it with: python -m agent_system.skills.merge {library.folder}")))
    return (library if not issues else None), issues


def word_counter() -> tuple[str, Counter]:
    return "words (whitespace-separated; pass --tokenizer PATH for model tokens)", lambda text: len(text.split())


def tokenizer_counter(path: Path) -> tuple[str, Counter]:
    """Token counts from a local Hugging Face tokenizer folder (no download)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load a tokenizer from {path} ({err}); give a local model or tokenizer folder") from err
    return f"tokens ({path})", lambda text: len(tokenizer.encode(text, add_special_tokens=False))


def cost_table(library: SkillLibrary, count: Counter) -> list[tuple[str, int]]:
    """Rows of (label, count): each file, each category's full context, and the merged context."""
    rows = [(f"file {name}", count(skill_file.text)) for name, skill_file in library.files.items()]
    every_file = active_context_fn(library, library.names)
    rows += [(f"context {category}", count(every_file(category))) for category in library.task_to_skill]
    rows.append(("context all files (skill_scope=all_files)", count(full_context_fn(library)(""))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_system.skills.lint", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="skill folder holding skill_mapping.json")
    parser.add_argument("--env", choices=sorted(TASK_CATEGORIES), help="environment (default: the folder name)")
    parser.add_argument("--tokenizer", type=Path, help="local Hugging Face tokenizer folder for token counts")
    args = parser.parse_args(argv)
    try:
        env = args.env or infer_env(args.folder)
        label, count = tokenizer_counter(args.tokenizer) if args.tokenizer else word_counter()
    except ValueError as err:
        parser.error(str(err))

    library, issues = lint_folder(args.folder, env)
    if library is None:
        for issue in issues:
            print(issue)
        print(f"{len(issues)} problem(s) in {args.folder}", file=sys.stderr)
        return 1
    print(f"{args.folder}: OK ({len(library.files)} files, {len(library.task_to_skill)} categories, env {env})")
    print(f"counts in {label}")
    rows = cost_table(library, count)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
