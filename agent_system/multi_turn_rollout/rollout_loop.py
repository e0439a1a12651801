"""TrajectoryCollector: the multi-turn loop between a rollout engine and an environment manager.

For one batch of tasks (each played ``group_n`` times, all copies sharing a ``uid`` and a reset seed):

    reset envs -> repeat up to max_steps: build each active env's prompt (one user message through the
    chat template, left-padded to max_prompt_length) -> generate one response per active env -> step the
    envs with the decoded text -> record the step -> drop finished envs.

Every (trajectory, step) becomes one training sample whose ``input_ids`` are exactly the prompt ids fed
to the engine followed by exactly the sampled response ids (token-in/token-out). Each sample carries
``uid``, ``traj_uid``, ``step_id``, the step's env reward, the episode reward (sum over the episode), the
anchor observation (GiGPO), ``is_action_valid``, whether the episode was won, and its metric tags.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from agent_system.environments.base import EnvironmentManagerBase
from verl.protocol import DataProto
from verl.utils.fs import write_text_atomic
from verl.utils.progress import progress_bar
from verl.utils.vision import IMAGE_MARKER, VisionPrompt

GenerateFn = Callable[[DataProto], DataProto]


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """0, 1, 2, ... over the real tokens of each left-padded row (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_min(0)


@dataclass
class PromptBuilder:
    """Renders env prompt texts (and, in visual mode, one image each) through the chat template into
    left-padded id tensors. An image goes first in the user message; its marker is expanded to the image's
    token count (:mod:`verl.utils.vision`) and truncation never cuts inside it."""

    tokenizer: Any
    max_prompt_length: int
    truncation: str  # left | right | error
    vision: VisionPrompt | None = None

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def token_ids(self, text: str, image: np.ndarray | None = None) -> list[int]:
        content: Any = text if image is None else [{"type": "image"}, {"type": "text", "text": text}]
        chat = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
        vision_start = None
        if image is None:
            ids = self._encode(chat)
        else:
            if self.vision is None:
                raise ValueError("an environment returned images but the policy is not a vision model; "
                                 "set ocr.use_ocr=True with a Qwen2.5-VL model")
            if chat.count(IMAGE_MARKER) != 1:
                raise ValueError(f"the chat template rendered {chat.count(IMAGE_MARKER)} image markers "
                                 f"({IMAGE_MARKER}) for one image; use the model's Qwen2.5-VL chat template")
            before, after = chat.split(IMAGE_MARKER)
            ids, vision_start = self.vision.expand(self._encode(before), self._encode(after), image)
        limit = self.max_prompt_length
        if len(ids) <= limit:
            return ids
        if self.truncation == "error":
            raise ValueError(f"a step prompt has {len(ids)} tokens > data.max_prompt_length={limit}; raise "
                             "data.max_prompt_length, lower env.history_length, or set data.truncation=left")
        if vision_start is not None:
            return self.vision.truncate(ids, vision_start, limit, self.truncation)
        return ids[-limit:] if self.truncation == "left" else ids[:limit]

    def build(self, texts: list[str], images: list[np.ndarray] | None = None) -> tuple[DataProto, int]:
        """(left-padded batch, number of truncated prompts); images travel as ``non_tensor_batch['images']``."""
        rows = [self.token_ids(t, None if images is None else images[i]) for i, t in enumerate(texts)]
        width = self.max_prompt_length
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        truncated = 0
        for i, row in enumerate(rows):
            ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row):] = 1
            truncated += int(len(row) == width)
        batch = DataProto.from_dict({"input_ids": ids, "attention_mask": mask,
                                     "position_ids": position_ids_from_mask(mask)},
                                    None if images is None else {"images": images})
        return batch, truncated


@dataclass
class _StepRecord:
    env_idx: np.ndarray
    prompts: DataProto
    responses: DataProto
    anchors: list[str]
    rewards: np.ndarray
    valid: np.ndarray
    step_id: int
    compression: np.ndarray | None = None  # visual mode: the factor each response chose for the next image


@dataclass
class RolloutResult:
    """The samples of one rollout plus per-trajectory outcomes (for metrics and the curriculum)."""

    samples: DataProto
    won: np.ndarray  # (num_envs,) bool
    episode_rewards: np.ndarray  # (num_envs,)
    episode_lengths: np.ndarray  # (num_envs,)
    metric_tags: list[list[str]]  # per env
    categories: list[str]  # per env
    stats: dict[str, float] = field(default_factory=dict)
    env_counts: dict[str, float] = field(default_factory=dict)  # the manager's counters (pop_metrics)


class TrajectoryCollector:
    def __init__(self, tokenizer: Any, max_prompt_length: int, truncation: str, max_steps: int,
                 prompt_log_dir: str | None = None, vision: VisionPrompt | None = None, progress: bool = False):
        self.tokenizer = tokenizer
        self.progress = progress  # a bar per rollout turn on a terminal (trainer.progress_bar)
        self.prompts = PromptBuilder(tokenizer, max_prompt_length, truncation, vision)
        self.max_steps = max_steps
        self.prompt_log_dir = Path(prompt_log_dir) if prompt_log_dir else None
        self._skill_token_cache: dict[str, int] = {}

    def _skill_tokens(self, text: str) -> int:
        if text not in self._skill_token_cache:
            self._skill_token_cache[text] = len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
        return self._skill_token_cache[text]

    def collect(self, tasks: list[dict[str, Any]], seeds: list[int], group_n: int, envs: EnvironmentManagerBase,
                generate_fn: GenerateFn, sampling: dict[str, Any], log_name: str | None = None) -> RolloutResult:
        """Play ``tasks`` (one env_kwargs dict per task) ``group_n`` times each; see the module docstring."""
        num_envs = len(tasks) * group_n
        if num_envs != envs.num_envs:
            raise ValueError(f"{len(tasks)} tasks x group {group_n} = {num_envs} envs, but the environment manager "
                             f"has {envs.num_envs}; build it with data batch size x env.rollout.n envs")
        kwargs = [dict(tasks[i // group_n], seed=int(seeds[i // group_n])) for i in range(num_envs)]
        uids = [str(uuid.uuid4()) for _ in tasks]
        env_uid = np.array([uids[i // group_n] for i in range(num_envs)], dtype=object)
        traj_uid = np.array([str(uuid.uuid4()) for _ in range(num_envs)], dtype=object)

        obs, infos = envs.reset(kwargs)
        categories = [envs.task_category(i) for i in range(num_envs)]
        tags = [envs.metric_tags(i) for i in range(num_envs)]
        active = np.ones(num_envs, dtype=bool)
        won = np.zeros(num_envs, dtype=bool)
        ep_reward = np.zeros(num_envs, dtype=np.float64)
        ep_len = np.zeros(num_envs, dtype=np.int64)
        records: list[_StepRecord] = []
        truncated = 0
        skill_tokens: list[int] = []
        log_rows: list[dict] = []

        turns = progress_bar(self.progress, total=self.max_steps, desc=log_name or "rollout", unit="turn", leave=False)
        for step in range(self.max_steps):
            idx = np.nonzero(active)[0]
            if len(idx) == 0:
                break
            turns.set_postfix(active_envs=len(idx))
            texts = [obs["text"][i] for i in idx]
            images = None if obs["image"] is None else [obs["image"][i] for i in idx]
            prompts, n_trunc = self.prompts.build(texts, images)
            truncated += n_trunc
            skill_tokens += [self._skill_tokens(envs.skill_context_fn(categories[i])) for i in idx]
            prompts.meta_info.update(sampling, seed=int(sampling.get("seed", 0)) * 1000 + step)
            out = generate_fn(prompts)
            decoded = self.tokenizer.batch_decode(out.batch["responses"], skip_special_tokens=True)
            actions: list[str | None] = [None] * num_envs
            for j, i in enumerate(idx):
                actions[i] = decoded[j]
            next_obs, rewards, dones, infos = envs.step(actions)
            valid = np.array([bool(infos[i].get("is_action_valid", True)) for i in idx])
            compression = (np.array([float(infos[i]["compression_factor"]) for i in idx])
                           if "compression_factor" in infos[idx[0]] else None)
            records.append(_StepRecord(idx, prompts, out, [obs["anchor"][i] for i in idx],
                                       np.asarray(rewards, dtype=np.float64)[idx], valid, step, compression))
            if self.prompt_log_dir is not None and log_name:
                log_rows += [{"env": int(i), "traj_uid": traj_uid[i], "step": step, "category": categories[i],
                              "anchor": obs["anchor"][i], "prompt": texts[j], "response": decoded[j]}
                             for j, i in enumerate(idx)]
            ep_reward[idx] += np.asarray(rewards, dtype=np.float64)[idx]
            ep_len[idx] += 1
            for i in idx:
                won[i] = bool(infos[i].get("won", False))
            active[idx] = ~np.asarray(dones, dtype=bool)[idx]
            obs = next_obs
            turns.update()
        turns.close()

        samples = self._to_samples(records, env_uid, traj_uid, ep_reward, ep_len, won)
        if log_rows:
            self._write_log(log_name, log_rows)
        prompt_tokens = samples.batch["attention_mask"][:, : self.prompts.max_prompt_length].sum(-1).float()
        stats = {
            "rollout/context_tokens_per_step": float(prompt_tokens.mean()) if len(samples) else 0.0,
            "rollout/skill_tokens_per_step": float(np.mean(skill_tokens)) if skill_tokens else 0.0,
            "rollout/prompt_truncated_ratio": truncated / max(len(samples), 1),
            "rollout/num_samples": float(len(samples)),
        }
        if self.prompts.vision is not None and "images" in samples.non_tensor_batch:
            stats.update(visual_stats(samples, self.prompts.vision.image_pad_id, prompt_tokens))
        stats.update(envs.rollout_stats())
        return RolloutResult(samples, won, ep_reward, ep_len, tags, categories, stats, envs.pop_metrics())

    def _to_samples(self, records: list[_StepRecord], env_uid: np.ndarray, traj_uid: np.ndarray,
                    ep_reward: np.ndarray, ep_len: np.ndarray, won: np.ndarray) -> DataProto:
        parts = []
        for r in records:
            prompt_ids = r.prompts.batch["input_ids"]
            prompt_mask = r.prompts.batch["attention_mask"]
            responses = r.responses.batch["responses"]
            response_mask = r.responses.batch["response_mask"]
            attention = torch.cat([prompt_mask, response_mask], dim=1)
            extras = {k: r.prompts.non_tensor_batch[k] for k in ("images",) if k in r.prompts.non_tensor_batch}
            if r.compression is not None:
                extras["compression_factor"] = r.compression
            parts.append(DataProto.from_dict(
                {
                    "prompts": prompt_ids,
                    "responses": responses,
                    "response_mask": response_mask,
                    "input_ids": torch.cat([prompt_ids, responses], dim=1),
                    "attention_mask": attention,
                    "position_ids": position_ids_from_mask(attention),
                },
                {
                    "uid": env_uid[r.env_idx],
                    "traj_uid": traj_uid[r.env_idx],
                    "anchor_obs": np.array(r.anchors, dtype=object),
                    "step_id": np.full(len(r.env_idx), r.step_id, dtype=np.int64),
                    "step_reward": r.rewards,
                    "is_action_valid": r.valid,
                    "episode_reward": ep_reward[r.env_idx],
                    "episode_length": ep_len[r.env_idx],
                    "won": won[r.env_idx],
                    **extras,
                },
            ))
        return DataProto.concat(parts)

    def _write_log(self, name: str, rows: list[dict]) -> None:
        write_text_atomic(self.prompt_log_dir / f"{name}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


def visual_stats(samples: DataProto, image_pad_id: int, prompt_tokens: torch.Tensor) -> dict[str, float]:
    """Visual-mode metrics per step sample: visual / text tokens (their sum is the context), the history
    image height and the compression factors the agent chose."""
    visual = (samples.batch["prompts"] == image_pad_id).sum(-1).float()
    heights = np.array([image.shape[0] for image in samples.non_tensor_batch["images"]], dtype=np.float64)
    out = {
        "rollout/visual_tokens_per_step": float(visual.mean()),
        "rollout/text_tokens_per_step": float((prompt_tokens - visual).mean()),
        "ocr/image_height/mean": float(heights.mean()),
        "ocr/image_height/max": float(heights.max()),
    }
    if "compression_factor" in samples.non_tensor_batch:
        factors = samples.non_tensor_batch["compression_factor"].astype(np.float64)
        out.update({"ocr/compression_factor/mean": float(factors.mean()),
                    "ocr/compression_factor/min": float(factors.min()),
                    "ocr/compression_factor/max": float(factors.max())})
    return out
