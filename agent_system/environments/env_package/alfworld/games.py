"""ALFWorld game data: where it lives, which games a split holds, and the one-time unpack.

Layout (what ``alfworld-download -f`` writes, and what the bundled tarball unpacks to)::

    <data root>/json_2.1.1/<folder>/<task_type>-<objects>-<scene>/trial_<id>/game.tw-pddl

with ``<folder>`` one of ``train``, ``valid_seen``, ``valid_unseen`` (and ``valid_train`` in the
bundled tarball). The data root is ``env.alfworld.data_path`` when set, else ``$ALFWORLD_DATA``,
else ``~/.cache/alfworld`` (the default of ``alfworld-download``).

Game selection follows ALFWorld's ``AlfredTWEnv.collect_game_files``: games under a path containing
``movable`` or ``Sliced`` are skipped, and so are games whose JSON lacks ``solvable`` or has it false.
The task type comes from ``traj_data.json`` when the trial folder has one, else from the prefix of
the game folder's name.

CLI: ``python -m agent_system.environments.env_package.alfworld.games --unpack`` unpacks the bundled
tarball (``$SKILLZERO_SHARED_DATA/alfworld/json_2.1.1.tar.xz``) once into the cache and prints the
folder to export as ``ALFWORLD_DATA``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from agent_system.environments.categories import ALFWORLD_TASK_TYPES
from verl.utils.fs import cache_dir, shared_data_dir, write_text_atomic

GAME_FILE = "game.tw-pddl"
DATA_VERSION = "json_2.1.1"
SPLIT_FOLDERS = ("train", "valid_seen", "valid_unseen", "valid_train")
EVAL_DATASETS = {"eval_in_distribution": "valid_seen", "eval_out_of_distribution": "valid_unseen"}

# ALFWorld's folder-name task types -> our task categories (only the first one is renamed).
FOLDER_TASK_TYPES = {
    "pick_and_place_simple": "pick_and_place",
    **{name: name for name in ALFWORLD_TASK_TYPES if name != "pick_and_place"},
}

_TARBALL = Path("alfworld") / f"{DATA_VERSION}.tar.xz"
_UNPACKED_MARKER = ".unpacked"

DATA_HELP = (
    "Get the ALFWorld games with `pip install alfworld==0.4.2 && alfworld-download -f` (writes "
    "~/.cache/alfworld, or $ALFWORLD_DATA when set), or unpack the bundled copy with "
    "`python -m agent_system.environments.env_package.alfworld.games --unpack` and export the "
    "ALFWORLD_DATA it prints; `env.alfworld.data_path=<folder holding json_2.1.1/>` overrides both."
)


@dataclass(frozen=True)
class GameSpec:
    """One playable game: its ``game.tw-pddl`` path and its task category."""

    path: str
    task_type: str


def unpack_shared_data(tarball: Path | None = None, target: Path | None = None) -> Path:
    """Unpack the bundled ALFWorld games once and return the folder to use as ``ALFWORLD_DATA``.

    ``tarball`` defaults to ``<shared data>/alfworld/json_2.1.1.tar.xz`` and ``target`` to
    ``<cache>/alfworld``. A file lock serialises concurrent callers and a marker file (written last)
    tells later callers the unpack is complete, so every call after the first returns at once.
    """
    tarball = Path(tarball) if tarball is not None else shared_data_dir() / _TARBALL
    target = Path(target) if target is not None else cache_dir() / "alfworld"
    marker = target / _UNPACKED_MARKER
    if marker.is_file():
        return target
    if not tarball.is_file():
        raise FileNotFoundError(
            f"ALFWorld tarball {tarball} not found; set SKILLZERO_SHARED_DATA to the shared data folder "
            f"(the one holding {_TARBALL}). {DATA_HELP}"
        )
    target.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target / ".unpack.lock")):
        if marker.is_file():  # another process finished while we waited for the lock
            return target
        final = target / DATA_VERSION
        if final.exists():  # left over from an interrupted run before the marker was written
            shutil.rmtree(final)
        with tempfile.TemporaryDirectory(dir=target, prefix=".unpack-") as scratch:
            with tarfile.open(tarball, mode="r:xz") as archive:
                archive.extractall(scratch, filter="data")
            unpacked = Path(scratch) / DATA_VERSION
            if not unpacked.is_dir():
                raise ValueError(f"{tarball} holds no top-level {DATA_VERSION}/ folder; is it the ALFWorld tarball?")
            os.replace(unpacked, final)
        write_text_atomic(marker, f"{tarball}\n")
    return target


def data_root(data_path: str | os.PathLike | None = None) -> Path:
    """The folder holding ``json_2.1.1/``: ``data_path``, else ``$ALFWORLD_DATA``, else ``~/.cache/alfworld``."""
    if data_path:
        return Path(os.path.expandvars(os.path.expanduser(str(data_path))))
    return Path(os.environ.get("ALFWORLD_DATA", Path.home() / ".cache" / "alfworld"))


def split_folder(split: str, eval_dataset: str) -> str:
    """Manager split (``train`` | ``val`` | ``test``) -> data folder, via ``env.alfworld.eval_dataset``."""
    if split == "train":
        return "train"
    if split not in ("val", "test"):
        raise ValueError(f"split={split!r} is not one of 'train', 'val', 'test'")
    if eval_dataset not in EVAL_DATASETS:
        known = ", ".join(EVAL_DATASETS)
        raise ValueError(f"env.alfworld.eval_dataset={eval_dataset!r} is unknown; use one of: {known}")
    return EVAL_DATASETS[eval_dataset]


def task_type_of(game_path: Path) -> str:
    """Task category of a game: ``traj_data.json``'s ``task_type`` if present, else the folder prefix."""
    trial_dir = game_path.parent
    traj_file = trial_dir / "traj_data.json"
    if traj_file.is_file():
        folder_type = json.loads(traj_file.read_text(encoding="utf-8")).get("task_type", "")
    else:
        folder_type = trial_dir.parent.name.split("-", 1)[0]
    if folder_type not in FOLDER_TASK_TYPES:
        known = ", ".join(FOLDER_TASK_TYPES)
        raise ValueError(
            f"cannot tell the task type of {game_path}: {folder_type!r} is not one of {known}; "
            "game folders must be named <task_type>-<objects>-<scene> or carry a traj_data.json"
        )
    return FOLDER_TASK_TYPES[folder_type]


def list_games(root: str | os.PathLike, folder: str) -> list[GameSpec]:
    """Solvable games of ``<root>/json_2.1.1/<folder>``, sorted by path (the order seeds index into)."""
    if folder not in SPLIT_FOLDERS:
        raise ValueError(f"ALFWorld data folder {folder!r} is not one of {', '.join(SPLIT_FOLDERS)}")
    split_dir = Path(root) / DATA_VERSION / folder
    if not split_dir.is_dir():
        raise FileNotFoundError(f"ALFWorld games folder {split_dir} does not exist. {DATA_HELP}")
    games = []
    for game_path in sorted(split_dir.rglob(GAME_FILE)):
        relative = str(game_path.relative_to(split_dir))
        if "movable" in relative or "Sliced" in relative:
            continue
        if not _is_solvable(game_path):
            continue
        games.append(GameSpec(path=str(game_path), task_type=task_type_of(game_path)))
    if not games:
        raise FileNotFoundError(f"ALFWorld games folder {split_dir} holds no solvable {GAME_FILE} files. {DATA_HELP}")
    return games


def load_game_json(game_path: str | os.PathLike) -> dict:
    """Parse a ``game.tw-pddl`` file, naming the file when it is not valid JSON."""
    try:
        return json.loads(Path(game_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read ALFWorld game {game_path}: {err}; re-download or re-unpack the data") from err


def _is_solvable(game_path: Path) -> bool:
    return bool(load_game_json(game_path).get("solvable", False))




def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unpack", action="store_true", help="unpack the bundled tarball into the cache")
    parser.add_argument("--tarball", type=Path, default=None, help="tarball to unpack (default: shared data)")
    parser.add_argument("--target", type=Path, default=None, help="where to unpack (default: <cache>/alfworld)")
    args = parser.parse_args(argv)
    if not args.unpack:
        parser.error("nothing to do; pass --unpack")
    root = unpack_shared_data(args.tarball, args.target)
    print(f"ALFWorld games unpacked in {root}; export ALFWORLD_DATA={root}")


if __name__ == "__main__":
    main()
