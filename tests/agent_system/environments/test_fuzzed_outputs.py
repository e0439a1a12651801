"""Fuzzed model outputs (issue 15, item 5) through the Search-QA manager's ``step`` and the parsers every
manager calls: no crash, and every output counted valid exactly when it is (labels come from how each text
was built, see ``benchmarks/fuzz_outputs.py``). The ALFWorld manager's share is in test_alfworld_manager.py;
``python benchmarks/faults.py`` runs 100k per projection."""

from __future__ import annotations

import random

from agent_system.environments.env_package.alfworld.projection import project_action
from agent_system.environments.env_package.search.projection import parse_action
from agent_system.environments.search_manager import make_manager
from benchmarks import fuzz_outputs
from tests.agent_system.environments.test_search_env import POPQA, env_cfg


def test_search_manager_step_counts_every_fuzzed_output_right(bm25_index):
    manager = make_manager(env_cfg(bm25_index), split="train", num_envs=8)
    report = fuzz_outputs.run_manager(manager, fuzz_outputs.search_sample, 400, seed=0,
                                      reset_kwargs=lambda episode: [dict(POPQA, seed=episode) for _ in range(8)])
    manager.close()
    assert report.ok(), report.as_dict()
    assert report.outputs >= 400 and 0 < report.invalid_outputs < report.outputs


def test_projections_agree_with_the_labels_of_fuzzed_outputs():
    rng = random.Random(1)
    for make, parse in ((fuzz_outputs.alfworld_sample, lambda t: project_action(t)[1]),
                        (fuzz_outputs.search_sample, lambda t: parse_action(t).is_valid)):
        samples = [make(rng) for _ in range(2000)]
        assert any(s.valid for s in samples) and not all(s.valid for s in samples)
        wrong = [s.text for s in samples if parse(s.text) != s.valid]
        assert not wrong, wrong[:3]
    assert fuzz_outputs.fuzz_compression(2000, seed=1).ok()
