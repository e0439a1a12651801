"""The evaluation protocol: which tasks validation and the final test play, and on how many envs.

The environment names the *distinct* tasks of a split (``agent_system.environments.evaluation_tasks``:
every ALFWorld game of valid_seen / valid_unseen, every distinct Search-QA question of the task slots).

- **Final test** (``trainer.test_after_train``): every distinct task exactly once, as in the paper's
  protocol (140 valid_seen games, 134 valid_unseen), whatever the number of test task slots.
- **Validation** (every ``trainer.test_freq`` steps): the number of validation task slots says how many
  tasks it plays; they are distinct — the first ones of a permutation of the distinct tasks seeded by
  ``env.seed``, without replacement — and the same at every validation, so validations are comparable
  and the with/without-skill runs of the curriculum are paired. With more slots than distinct tasks it
  plays each task once.

Before this protocol the ALFWorld envs drew ``games[hash(seed) % 140]``: 128 validation slots covered
only 90 of the 140 valid_seen games, some twice, and the final test played the 128 slots, not the 140 games.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def validation_tasks(tasks: list[dict[str, Any]], num_slots: int, seed: int) -> list[dict[str, Any]]:
    """``min(num_slots, len(tasks))`` distinct tasks: a seeded sample without replacement, in list order."""
    if num_slots >= len(tasks):
        if num_slots > len(tasks):
            print(f"validation: {num_slots} validation task slots but {len(tasks)} distinct tasks; "
                  f"each validation plays all {len(tasks)} once", flush=True)
        return list(tasks)
    chosen = np.random.default_rng(seed).permutation(len(tasks))[:num_slots]
    return [tasks[i] for i in sorted(chosen)]


def eval_num_envs(num_tasks: int, batch_size: int) -> int:
    """Parallel envs to play ``num_tasks`` tasks in batches of at most ``data.val_batch_size``, sized so the
    batches are even (140 tasks with batch size 128: two batches of 70, not 128 + 12 padded to 128)."""
    return math.ceil(num_tasks / math.ceil(num_tasks / batch_size))
