"""TRL's ``GRPOTrainer`` on the work of one of our training steps: the TRL side of ``compare.py``.

    .venv-bench/bin/python benchmarks/trl_grpo.py SPEC.json

Runs in the separate benchmark environment (``bash benchmarks/setup_venv.sh``; TRL is not a SkillZero
dependency) with the repository on ``PYTHONPATH`` for the echo game's reward. ``SPEC.json`` (written by
``compare_trainer.py``) fixes the model, the chat prompts, the group size, the prompts per step, the
response length, the learning rate and the micro-batch; every other knob is set to what our trainer
does: fp32 on CPU, no reference model (beta 0), PPO clip 0.2, one pass over the batch
(``num_iterations`` 1, so TRL reuses the update's forward as the old log-probs), token-mean loss over
the whole mini-batch (``dapo``), group-std advantage scaling, AdamW with weight decay 0.01, constant
learning rate, gradient clipping 1.0. Prints one JSON line: seconds and tokens (prompt + completion,
padding excluded) of every optimizer step.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time

from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from agent_system.environments.env_package.echo.envs import EchoGame
from agent_system.environments.env_package.echo.projection import echo_projection


def echo_reward(completions: list[list[dict]], word: list[str], **_) -> list[float]:
    """The echo game's reward for one attempt (character similarity of the projected answer)."""
    attempts, _valid = echo_projection([completion[0]["content"] for completion in completions])
    return [EchoGame(target, max_steps=1).step(attempt) for attempt, target in zip(attempts, word)]


class StepTimer(TrainerCallback):
    """Wall seconds and tokens of every optimizer step (generation included)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._started = 0.0
        self._tokens = 0

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = time.perf_counter()
        self._tokens = state.num_input_tokens_seen

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append({"seconds": time.perf_counter() - self._started,
                           "tokens": state.num_input_tokens_seen - self._tokens})


def main(spec_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    samples = spec["group"] * spec["prompts_per_step"]
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": text}], "word": word}
                                 for text, word in zip(spec["prompts"], spec["words"])])
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, max_steps=spec["steps"], seed=spec["seed"], use_cpu=True, bf16=False, fp16=False,
            per_device_train_batch_size=spec["micro_batch"], gradient_accumulation_steps=samples // spec["micro_batch"],
            num_generations=spec["group"], max_completion_length=spec["max_response_length"],
            temperature=spec["temperature"], top_p=1.0, learning_rate=spec["lr"], lr_scheduler_type="constant",
            warmup_steps=0, weight_decay=0.01, max_grad_norm=1.0, beta=0.0, epsilon=0.2, num_iterations=1,
            loss_type="dapo", scale_rewards="group", disable_dropout=True, logging_steps=1, report_to="none",
            save_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = GRPOTrainer(model=spec["model"], reward_funcs=echo_reward, args=config, train_dataset=dataset,
                              callbacks=[timer])
        trainer.train()
    print(json.dumps({"steps": timer.steps}))


if __name__ == "__main__":
    main(sys.argv[1])
