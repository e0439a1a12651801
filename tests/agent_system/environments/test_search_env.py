"""Search-QA manager + envs over a real in-process BM25 retriever (``local:<index dir>``)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from agent_system.environments import make_env_manager
from agent_system.environments.env_package.search.envs import INVALID_ACTION_FEEDBACK
from agent_system.environments.prompts.search import SEARCH_LAST_TURN_NOTE
from agent_system.environments.search_manager import make_manager

TASK = {"question": "Which magazine is Gary Groth the editor of?", "ground_truth": ["The Comics Journal"],
        "data_source": "hotpotqa", "skill_type": "multi_hop_reasoning", "seed": 7}
POPQA = {"question": "Who is the author of The Book of the Law?", "ground_truth": ["Aleister Crowley"],
         "data_source": "popqa", "skill_type": "entity_attribute_lookup", "seed": 8}


def env_cfg(index_dir, **overrides) -> dict:
    cfg = {"env_name": "search", "max_steps": 4, "history_length": 2,
           "search": {"search_url": f"local:{index_dir}", "topk": 2, "timeout": 5, "max_retries": 0,
                      "retry_backoff": 0.0, "max_outage_s": 0, "concurrency": 1}}
    for key, value in overrides.items():
        if key in cfg["search"]:
            cfg["search"][key] = value
        else:
            cfg[key] = value
    return cfg


@pytest.fixture()
def manager(bm25_index):
    manager = make_manager(env_cfg(bm25_index), split="train", num_envs=2)
    yield manager
    manager.close()


def test_reset_prompt_anchor_and_categories(manager):
    obs, infos = manager.reset([TASK, POPQA])
    assert obs["image"] is None and obs["anchor"] == [TASK["question"], POPQA["question"]]
    assert TASK["question"] in obs["text"][0] and "<search>" in obs["text"][0] and "<answer>" in obs["text"][0]
    assert "Turn 1]" not in obs["text"][0] and "###" not in obs["text"][0]
    assert [info["won"] for info in infos] == [False, False]
    assert [manager.task_category(i) for i in range(2)] == ["multi_hop_reasoning", "entity_attribute_lookup"]
    assert manager.metric_tags(1) == ["popqa", "entity_attribute_lookup"]


def test_skill_context_is_injected_per_category(manager):
    manager.set_skill_context_fn(lambda category: f"### TASK: {category} ###\n- a tip\n\n")
    obs, _ = manager.reset([TASK, POPQA])
    assert obs["text"][0].startswith("### TASK: multi_hop_reasoning ###\n- a tip\n\n")
    assert obs["text"][1].startswith("### TASK: entity_attribute_lookup ###")
    obs, *_ = manager.step(["<search>Gary Groth</search>", "<search>Book of the Law</search>"])
    assert obs["text"][0].startswith("### TASK: multi_hop_reasoning ###")


def test_search_then_answer(manager):
    manager.reset([TASK, POPQA])
    obs, rewards, dones, infos = manager.step(["<think>hm</think><search> Gary Groth editor </search>",
                                               "<search>Aleister Crowley</search>"])
    assert rewards.tolist() == [0.0, 0.0] and not dones.any()
    assert [info["is_action_valid"] for info in infos] == [True, True] and infos[0]["action"] == "search"
    text = obs["text"][0]
    assert "[Turn 1] <search> Gary Groth editor </search>\n<information>Doc 1: (Title: Gary Groth) " in text
    assert "Doc 2: " in text and "Doc 3: " not in text  # topk 2
    assert obs["anchor"][0].startswith(TASK["question"] + "\n<information>Doc 1: (Title: Gary Groth)")
    obs, rewards, dones, infos = manager.step(["<answer>The Comics Journal</answer>", "<answer>Aiwass</answer>"])
    assert rewards.tolist() == [1.0, 0.0] and dones.tolist() == [True, True]
    assert [info["won"] for info in infos] == [True, False]


def test_invalid_output_counts_as_invalid_and_the_episode_goes_on(manager):
    manager.reset([TASK, POPQA])
    obs, rewards, dones, infos = manager.step(["I think it is TCJ.", "<search>a</search><answer>b</answer>"])
    assert [info["is_action_valid"] for info in infos] == [False, False] and not dones.any()
    assert rewards.tolist() == [0.0, 0.0]
    assert INVALID_ACTION_FEEDBACK in obs["text"][0] and "(an output with no valid action)" in obs["text"][0]
    _, rewards, dones, _ = manager.step(["<answer>the comics journal</answer>", "<answer>Aleister Crowley</answer>"])
    assert rewards.tolist() == [1.0, 1.0] and dones.all()


def test_episode_ends_after_max_steps_with_reward_zero(bm25_index):
    manager = make_manager(env_cfg(bm25_index, max_steps=2), split="val", num_envs=1)
    try:
        obs, _ = manager.reset([TASK])
        obs, _, dones, _ = manager.step(["<search>Gary Groth</search>"])
        assert not dones[0] and SEARCH_LAST_TURN_NOTE in obs["text"][0] and "turn 2 of 2" in obs["text"][0]
        obs, rewards, dones, infos = manager.step(["<search>still searching</search>"])
        assert dones[0] and rewards[0] == 0.0 and not infos[0]["won"] and infos[0]["turn"] == 2
    finally:
        manager.close()


def test_history_is_bounded_by_history_length(bm25_index):
    manager = make_manager(env_cfg(bm25_index, history_length=1), split="train", num_envs=1)
    try:
        manager.reset([TASK])
        manager.step(["<search>first query</search>"])
        obs, *_ = manager.step(["<search>second query</search>"])
        text = obs["text"][0]
        assert "[Turn 2] <search> second query </search>" in text and "first query" not in text
        assert "last 1 of 2 turns" in text and "turn 3 of 4" in text
    finally:
        manager.close()


def test_finished_envs_take_none(manager):
    manager.reset([TASK, POPQA])
    obs, *_ = manager.step(["<answer>TCJ</answer>", "<search>Crowley</search>"])
    before = obs["text"][0]
    obs, rewards, dones, infos = manager.step([None, "<answer>Aleister Crowley</answer>"])
    assert obs["text"][0] == before and rewards.tolist() == [0.0, 1.0] and dones.tolist() == [True, True]
    assert infos[0]["won"] is False and infos[0]["is_action_valid"] is False
    with pytest.raises(ValueError, match="after its episode ended"):
        manager.step(["<answer>x</answer>", None])
    manager.reset([TASK, POPQA])
    with pytest.raises(ValueError, match="still running"):
        manager.step([None, "<answer>x</answer>"])
    with pytest.raises(ValueError, match="1 texts for 2 envs"):
        manager.step(["<answer>x</answer>"])


def test_reset_kwargs_are_validated_and_skill_type_defaults_to_the_classifier(manager):
    untyped = {key: value for key, value in POPQA.items() if key != "skill_type"}
    manager.reset([TASK, untyped])
    assert manager.task_category(1) == "entity_attribute_lookup"
    with pytest.raises(ValueError, match="non-empty 'question'"):
        manager.reset([TASK, {"ground_truth": ["x"], "seed": 0}])
    with pytest.raises(ValueError, match="lack 'ground_truth'"):
        manager.reset([TASK, {"question": "q?", "seed": 0}])
    with pytest.raises(ValueError, match="is not one of"):
        manager.reset([TASK, dict(TASK, skill_type="cooking")])
    with pytest.raises(ValueError, match="1 kwargs dicts for 2 envs"):
        manager.reset([TASK])


@pytest.mark.parametrize("overrides,message", [
    ({"topk": 0}, "env.search.topk"),
    ({"timeout": 0}, "env.search.timeout"),
    ({"max_retries": -1}, "max_retries"),
    ({"search_url": "ftp://host/retrieve"}, "must start with http://"),
    ({"search_url": []}, "must be a URL"),
    ({"history_length": -1}, "env.history_length"),
    ({"max_steps": 0}, "env.max_steps"),
])
def test_bad_config_is_rejected(bm25_index, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_manager(env_cfg(bm25_index, **overrides), split="train", num_envs=1)


def test_factory_builds_the_search_manager_from_a_dictconfig(bm25_index):
    manager = make_env_manager(OmegaConf.create(env_cfg(bm25_index)), split="test", num_envs=1)
    try:
        obs, _ = manager.reset([POPQA])
        assert POPQA["question"] in obs["text"][0]
    finally:
        manager.close()
