"""Visual (AgentOCR) mode of the ALFWorld and Search-QA managers: the history becomes an image, the
prompt keeps the rest, the agent's compression choice shrinks the next image."""

from __future__ import annotations

import numpy as np
import pytest

from agent_system.environments import make_env_manager
from agent_system.environments.env_package.alfworld import check_data
from tests.agent_system.environments.alfworld_fixtures import env_config
from tests.agent_system.environments.test_search_env import POPQA, TASK, env_cfg
from tests.conftest import trainer_config

RED, BLUE = (255, 0, 0), (0, 0, 255)


def ocr_config(*overrides: str):
    return trainer_config(["ocr.use_ocr=True", "ocr.font_size=10", "ocr.use_parallel=False",
                           "ocr.agent_select_compression.enable=True", *overrides]).ocr


def has_color(image: np.ndarray, color) -> bool:
    return bool((image == color).all(-1).any())


@pytest.fixture(scope="module")
def alfworld(ray_cluster, alfworld_root):
    manager = make_env_manager(env_config(alfworld_root), "val", 2, ocr_config())
    yield manager
    manager.close()


def test_alfworld_history_moves_into_the_image(alfworld):
    plan = check_data.walkthrough_of(alfworld.game_for_seed(3))
    obs, _ = alfworld.reset([{"seed": 3}, {"seed": 3}])
    assert [im.shape for im in obs["image"]] == [(38, 38, 3)] * 2 and (obs["image"][0] == 255).all()
    assert "it is blank because this is your first step" in obs["text"][0]
    assert "<compression>" in obs["text"][0] and "Admissible actions" in obs["text"][0]
    act = f"<think>go</think><action>{plan[0]}</action>"
    obs, _, _, infos = alfworld.step([act + "<compression>1</compression>", act + "<compression>4</compression>"])
    assert [info["compression_factor"] for info in infos] == [1.0, 4.0]
    assert all(info["is_action_valid"] for info in infos)
    full, small = obs["image"]
    assert full.shape[1] == 392 + 10 and has_color(full, RED) and has_color(full, BLUE)  # [Action], [Observation]
    assert small.shape[1] == 196 + 10 and small.shape[0] < full.shape[0]
    text = obs["text"][0]
    assert "[Observation]" not in text and "The image above shows your last 1 observation(s)" in text
    assert "compressed with factor 1.00" in text and "compressed with factor 4.00" in obs["text"][1]
    assert obs["anchor"][0] in text  # the current observation stays in the text
    act = f"<think>go</think><action>{plan[1]}</action>"
    obs, _, _, infos = alfworld.step([act + "<compression>2</compression><compression>2</compression>", act])
    assert [info["is_action_valid"] for info in infos] == [False, True]
    assert infos[1]["compression_factor"] == 1.0  # no tag: no compression
    stats = alfworld.rollout_stats()
    # group copies took the same actions: each entry was rendered once for both slots
    assert stats["ocr/segments_rendered"] == 2 and stats["ocr/cache_hit_rate"] > 0 and stats["ocr/render_seconds"] > 0


def test_search_history_moves_into_the_image(bm25_index):
    manager = make_env_manager(OmegaConfCreate(env_cfg(bm25_index, history_length=4)), "train", 2, ocr_config())
    try:
        obs, _ = manager.reset([TASK, POPQA])
        assert "blank because this is your first turn" in obs["text"][0]
        obs, _, dones, infos = manager.step(["<search> Gary Groth editor </search><compression>2</compression>",
                                             "<answer> Aleister Crowley </answer>"])
        assert list(dones) == [False, True] and infos[0]["compression_factor"] == 2.0
        history, finished = obs["image"]
        assert finished.shape == (38, 38, 3)  # finished episodes show the blank image
        assert history.shape[1] == round(392 / np.sqrt(2)) + 10
        assert "Doc 1" not in obs["text"][0] and "The image above shows your last 1 of 1 turns" in obs["text"][0]
        obs, *_ = manager.step(["<search> The Comics Journal </search>", None])
        assert has_color(obs["image"][0], RED) and has_color(obs["image"][0], BLUE)  # <information>, <search>
    finally:
        manager.close()


def OmegaConfCreate(cfg: dict):
    from omegaconf import OmegaConf

    return OmegaConf.create(cfg)
