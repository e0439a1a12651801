"""ALFWorld data discovery and the one-time unpack of the bundled tarball."""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from agent_system.environments.categories import ALFWORLD_TASK_TYPES
from agent_system.environments.env_package.alfworld import games as games_mod
from agent_system.environments.env_package.alfworld.games import (
    data_root,
    list_games,
    split_folder,
    task_type_of,
    unpack_shared_data,
)
from tests.agent_system.environments.alfworld_fixtures import copy_game


def _tarball_of(tmp_path: Path, game_path: str) -> Path:
    """A small tarball in the alfworld-download layout holding one game."""
    tarball = tmp_path / "json_2.1.1.tar.xz"
    trial = Path(game_path).parent
    with tarfile.open(tarball, "w:xz") as archive:
        archive.add(trial, arcname=f"json_2.1.1/train/{trial.parent.name}/{trial.name}")
    return tarball


def test_unpack_once_then_reuse(tmp_path, valid_seen_games):
    tarball = _tarball_of(tmp_path, valid_seen_games[0].path)
    target = tmp_path / "cache" / "alfworld"
    assert unpack_shared_data(tarball, target) == target
    assert [g.path for g in list_games(target, "train")] == [
        str(next((target / "json_2.1.1" / "train").rglob("game.tw-pddl")))
    ]
    tarball.unlink()  # a later call must not need the tarball any more
    assert unpack_shared_data(tarball, target) == target
    assert not list(target.glob(".unpack-*")), "scratch folder left behind"


def test_unpack_replaces_a_half_finished_folder(tmp_path, valid_seen_games):
    tarball = _tarball_of(tmp_path, valid_seen_games[0].path)
    target = tmp_path / "alfworld"
    stale = target / "json_2.1.1" / "train" / "stale-folder"
    stale.mkdir(parents=True)  # an interrupted unpack: folder present, marker missing
    unpack_shared_data(tarball, target)
    assert not stale.exists()
    assert len(list_games(target, "train")) == 1


def test_unpack_without_tarball_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="alfworld-download"):
        unpack_shared_data(tmp_path / "missing.tar.xz", tmp_path / "out")


def test_unpack_cli_prints_the_folder(tmp_path, valid_seen_games, capsys):
    tarball = _tarball_of(tmp_path, valid_seen_games[0].path)
    games_mod.main(["--unpack", "--tarball", str(tarball), "--target", str(tmp_path / "t")])
    assert f"ALFWORLD_DATA={tmp_path / 't'}" in capsys.readouterr().out


def test_bundled_valid_seen_split(valid_seen_games):
    assert len(valid_seen_games) == 140
    paths = [g.path for g in valid_seen_games]
    assert paths == sorted(paths)
    counts = Counter(g.task_type for g in valid_seen_games)
    assert set(counts) == set(ALFWORLD_TASK_TYPES)
    assert counts["pick_and_place"] == sum("pick_and_place_simple-" in p for p in paths)


def test_unsolvable_movable_and_sliced_games_are_skipped(tmp_path, valid_seen_games):
    split_dir = tmp_path / "json_2.1.1" / "train"
    keep = copy_game(valid_seen_games[0], split_dir)
    unsolvable = copy_game(valid_seen_games[1], split_dir)
    data = json.loads(unsolvable.read_text())
    data["solvable"] = False
    unsolvable.write_text(json.dumps(data))
    no_flag = copy_game(valid_seen_games[2], split_dir)
    data = json.loads(no_flag.read_text())
    del data["solvable"]
    no_flag.write_text(json.dumps(data))
    copy_game(valid_seen_games[3], split_dir, "pick_and_place_simple-AppleSliced-None-Fridge-1")
    copy_game(valid_seen_games[4], split_dir, "pick_and_place_simple-Pan-None-movable-1")
    assert [g.path for g in list_games(tmp_path, "train")] == [str(keep)]


def test_task_type_from_traj_data_beats_folder_name(tmp_path, valid_seen_games):
    game = copy_game(valid_seen_games[0], tmp_path, "pick_and_place_simple-Watch-None-Desk-1")
    assert task_type_of(game) == "pick_and_place"
    (game.parent / "traj_data.json").write_text(json.dumps({"task_type": "pick_heat_then_place_in_recep"}))
    assert task_type_of(game) == "pick_heat_then_place_in_recep"


def test_unknown_task_type_is_a_clear_error(tmp_path, valid_seen_games):
    game = copy_game(valid_seen_games[0], tmp_path, "juggle_things-Ball-None-Floor-1")
    with pytest.raises(ValueError, match="juggle_things"):
        task_type_of(game)


def test_missing_or_empty_split_folder_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="alfworld-download -f"):
        list_games(tmp_path, "valid_unseen")
    (tmp_path / "json_2.1.1" / "valid_unseen").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no solvable"):
        list_games(tmp_path, "valid_unseen")
    with pytest.raises(ValueError, match="not one of"):
        list_games(tmp_path, "test")


def test_broken_game_json_names_the_file(tmp_path, valid_seen_games):
    game = copy_game(valid_seen_games[0], tmp_path / "json_2.1.1" / "train")
    game.write_text("{not json")
    with pytest.raises(ValueError, match=str(game)):
        list_games(tmp_path, "train")


def test_split_mapping():
    assert split_folder("train", "eval_in_distribution") == "train"
    assert split_folder("val", "eval_in_distribution") == "valid_seen"
    assert split_folder("test", "eval_out_of_distribution") == "valid_unseen"
    with pytest.raises(ValueError, match="env.alfworld.eval_dataset"):
        split_folder("val", "eval_everything")
    with pytest.raises(ValueError, match="split="):
        split_folder("dev", "eval_in_distribution")


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "env"))
    assert data_root(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("ALFWORLD_DATA")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data_root(None) == tmp_path / ".cache" / "alfworld"
