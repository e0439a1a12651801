"""Merge a skill folder's files into one skill file for the static baseline.

    python -m agent_system.skills.merge skills/alfworld            # writes skills/alfworld/all_skills.md
    python -m agent_system.skills.merge skills/alfworld --check    # exit 1 if that file is stale

The merged file holds every file of ``skill_mapping.json``, ``general_skills`` first, and is what
``env.use_skill=True env.skill_file=skills/<env>/all_skills.md`` injects; it is also the text of
the final ``test/full_skill`` evaluation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verl.utils.fs import write_text_atomic
from agent_system.skills.context import merged_text
from agent_system.skills.library import SkillLibrary, SkillValidationError, load_skill_library

MERGED_FILE_NAME = "all_skills.md"


def merged_file_text(library: SkillLibrary) -> str:
    """The contents of the merged skill file (its canonical text plus a final newline)."""
    return merged_text(library) + "\n"


def stale_merged_file(library: SkillLibrary, path: Path) -> str | None:
    """Why the merged file at ``path`` does not match the mapping (None when it is current)."""
    if not path.is_file():
        return f"{path} does not exist"
    if path.read_text(encoding="utf-8", errors="replace") != merged_file_text(library):
        return f"{path} differs from the merge of {library.mapping_path.name}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent_system.skills.merge", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="skill folder holding skill_mapping.json")
    parser.add_argument("--out", type=Path, help=f"output file (default: FOLDER/{MERGED_FILE_NAME})")
    parser.add_argument("--check", action="store_true", help="only check that the output file is current")
    args = parser.parse_args(argv)
    out = args.out or args.folder / MERGED_FILE_NAME
    try:
        library = load_skill_library(args.folder)
    except SkillValidationError as err:
        print(err, file=sys.stderr)
        return 1
    if args.check:
        problem = stale_merged_file(library, out)
        if problem:
            print(f"{problem}; regenerate it with: python -m agent_system.skills.merge {args.folder}", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    write_text_atomic(out, merged_file_text(library))
    print(f"wrote {out} ({len(library.files)} files merged)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
