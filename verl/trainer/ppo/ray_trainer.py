"""The training loop: rollout -> reward -> advantage -> update -> validate -> curriculum -> save.

Read :meth:`RayPPOTrainer.fit` top to bottom; every stage is one short method below it. The loop runs
on the driver; the heavy work happens in the Ray worker groups (``actor_wg``: policy, rollout engine,
reference; ``critic_wg``: value model) and in the environment managers.
"""

from __future__ import annotations

import hashlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agent_system.environments.base import EnvironmentManagerBase, SkillContextFn, no_skills
from agent_system.multi_turn_rollout.metrics import evaluation_metrics, rollout_metrics
from agent_system.multi_turn_rollout.rollout_loop import RolloutResult, TrajectoryCollector
from agent_system.reward_manager.compression import CompressionReward
from agent_system.reward_manager.episode import EpisodeRewardManager
from verl.protocol import DataProto
from verl.single_controller import RayWorkerGroup
from verl.trainer.ppo import core_algos
from verl.trainer.ppo.metric_utils import data_metrics, throughput_metrics, timer
from verl.utils.checkpoint import CheckpointManager, read_trainer_state
from verl.utils.dataset import TaskSlotLoader
from verl.utils.progress import progress_bar, step_timing_line
from verl.utils.torch_functional import masked_mean, place_reward_on_last_token
from verl.utils.tracking import Tracking, jsonable_metrics
from verl.workers.actor import layout_mini_batches
from verl.workers.zero_advantage import skips_zero_advantage


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any tuple of values (same inputs -> same seed, across processes)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class Envs:
    train: EnvironmentManagerBase
    val: EnvironmentManagerBase
    test: EnvironmentManagerBase | None = None  # built on demand for trainer.test_after_train


class RayPPOTrainer:
    def __init__(self, cfg: DictConfig, tokenizer: Any, actor_wg: RayWorkerGroup, critic_wg: RayWorkerGroup | None,
                 envs: Envs, train_loader: TaskSlotLoader, val_tasks: list[dict], test_tasks: list[dict],
                 total_training_steps: int, skills: Any = None,
                 make_test_envs: Callable[[], EnvironmentManagerBase] | None = None, resume_from: Path | None = None,
                 vision: Any = None):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.actor_wg = actor_wg
        self.critic_wg = critic_wg
        self.envs = envs
        self.train_loader = train_loader
        self.val_tasks = val_tasks
        self.test_tasks = test_tasks
        self.total_training_steps = total_training_steps
        self.skills = skills  # skill_schedule.StaticSkills | CurriculumSkills | None (no skills)
        self.make_test_envs = make_test_envs
        self.resume_from = resume_from  # the checkpoint to resume from (CheckpointManager.resume_path), None = fresh
        self.resumed_row: dict[str, Any] | None = None  # the metrics row saved with that checkpoint
        self.global_step = 0
        self.group_n = cfg.env.rollout.n
        self.reward_fn = EpisodeRewardManager()
        ocr = cfg.ocr  # visual mode: the agent-chosen compression earns a bonus (docs/visual.md)
        self.compression_reward = (CompressionReward.from_config(ocr)
                                   if ocr.use_ocr and ocr.agent_select_compression.enable else None)
        kl = cfg.algorithm.kl_ctrl
        self.kl_ctrl = (core_algos.AdaptiveKLController(kl.kl_coef, kl.target_kl, kl.horizon) if kl.type == "adaptive"
                        else core_algos.FixedKLController(kl.kl_coef))
        log_dir = f"{cfg.trainer.default_local_dir}/rollouts" if cfg.trainer.log_prompts else None
        self.collector = TrajectoryCollector(tokenizer, cfg.data.max_prompt_length, cfg.data.truncation,
                                             cfg.env.max_steps, log_dir, vision, progress=cfg.trainer.progress_bar)
        self.ckpt = CheckpointManager(cfg.trainer.default_local_dir, cfg.trainer.max_actor_ckpt_to_keep,
                                      cfg.trainer.max_critic_ckpt_to_keep)
        self.tracker: Tracking | None = None

    # ------------------------------------------------------------------------------------------ loop
    def fit(self) -> None:
        self._load_checkpoint()
        cfg = self.cfg.trainer
        self.tracker = Tracking(list(cfg.logger), cfg.project_name, cfg.experiment_name,
                                OmegaConf.to_container(self.cfg, resolve=True), cfg.default_local_dir,
                                resume_step=self.global_step if self.resume_from is not None else None,
                                resume_row=self.resumed_row)
        if self.skills is not None:
            self.skills.apply(self.envs.train, self.envs.val)
        if cfg.val_before_train and self.global_step == 0:
            self.tracker.log(self._validate(step=0), step=0)
        progress = progress_bar(cfg.progress_bar, iterable=range(self.global_step + 1, self.total_training_steps + 1),
                                initial=self.global_step, total=self.total_training_steps, desc="training", unit="step")
        for step in progress:
            self.global_step = step
            timings: dict[str, float] = {}
            with timer("step", timings):
                batch, metrics = self._train_step(step, timings)
            last = step == self.total_training_steps
            if cfg.test_freq > 0 and (step % cfg.test_freq == 0 or last):
                with timer("testing", timings):
                    metrics.update(self._validate(step))
            metrics.update(throughput_metrics(batch, timings, self.actor_wg.world_size))
            metrics["training/global_step"] = step
            metrics["training/epoch"] = self.train_loader.epoch
            metrics.update({f"timing_s/{k}": v for k, v in timings.items()})
            if cfg.save_freq > 0 and (step % cfg.save_freq == 0 or last):
                with timer("save_checkpoint", timings):
                    self._save_checkpoint(metrics)  # the checkpoint carries the step's metrics row
                metrics["timing_s/save_checkpoint"] = timings["save_checkpoint"]
            tqdm.write(step_timing_line(step, self.total_training_steps, timings), file=sys.stdout)
            self.tracker.log(metrics, step=step)
        if cfg.test_after_train:
            self.tracker.log(self._final_test(), step=self.global_step)

    def _train_step(self, step: int, timings: dict[str, float]) -> tuple[DataProto, dict[str, float]]:
        with timer("gen", timings):
            batch, metrics = self._rollout_train_batch(step)
        with timer("reward", timings):
            self._compute_rewards(batch)
        temperature = self.cfg.actor_rollout_ref.rollout.temperature
        batch.meta_info["temperature"] = temperature
        if not self._old_log_probs_from_update(batch):
            with timer("old_log_prob", timings):
                old = self.actor_wg.dispatch_dp("compute_log_prob", batch)
                batch.batch["old_log_probs"] = old.batch["old_log_probs"]
                metrics["actor/entropy_rollout"] = float(masked_mean(old.batch["entropys"],
                                                                     batch.batch["response_mask"]))
        if self._use_ref:
            with timer("ref", timings):
                batch.batch["ref_log_prob"] = self.actor_wg.dispatch_dp("compute_ref_log_prob", batch).batch["ref_log_prob"]
        if self.critic_wg is not None:
            with timer("values", timings):
                batch.batch["values"] = self.critic_wg.dispatch_dp("compute_values", batch).batch["values"]
        with timer("adv", timings):
            metrics.update(self._apply_kl_in_reward(batch))
            self._compute_advantage(batch)
        if self.critic_wg is not None:
            with timer("update_critic", timings):
                metrics.update(self._update(self.critic_wg, "update_critic", batch, self.cfg.critic.ppo_mini_batch_size))
        if step > self.cfg.trainer.critic_warmup:
            with timer("update_actor", timings):
                metrics.update(self._update(self.actor_wg, "update_actor", batch,
                                            self.cfg.actor_rollout_ref.actor.ppo_mini_batch_size))
        metrics.update(data_metrics(batch, self.cfg.data.max_response_length))
        return batch, metrics

    def _old_log_probs_from_update(self, batch: DataProto) -> bool:
        """Nothing reads the old log-probs before the update (KL in the reward does; no advantage
        estimator does) and either one PPO epoch runs over one mini-batch (the actor takes them from its
        update's forward) or zero-advantage samples are skipped (the actor computes them for the rows
        that run only): the actor gets them itself (``verl.workers.actor``, ``verl.workers.zero_advantage``)."""
        actor = self.cfg.actor_rollout_ref.actor
        single_pass = actor.ppo_epochs == 1 and actor.ppo_mini_batch_size * self.group_n >= len(batch)
        return not self.cfg.algorithm.use_kl_in_reward and (single_pass or skips_zero_advantage(actor))

    # ------------------------------------------------------------------------------------ rollout
    def _generate(self, prompts: DataProto) -> DataProto:
        return self.actor_wg.dispatch_dp("generate_sequences", prompts)

    def _train_sampling(self, step: int, attempt: int) -> dict[str, Any]:
        r = self.cfg.actor_rollout_ref.rollout
        return {"do_sample": r.do_sample, "temperature": r.temperature, "top_p": r.top_p, "top_k": r.top_k,
                "seed": derive_seed(self.cfg.trainer.seed, "train", step, attempt)}

    def _rollout_once(self, step: int, attempt: int) -> RolloutResult:
        tasks = self.train_loader.next_batch()
        seeds = [derive_seed(self.cfg.env.seed, step, attempt, g) for g in range(len(tasks))]
        return self.collector.collect(tasks, seeds, self.group_n, self.envs.train, self._generate,
                                      self._train_sampling(step, attempt), log_name=f"train_step_{step}_{attempt}")

    def _rollout_train_batch(self, step: int) -> tuple[DataProto, dict[str, float]]:
        """One rollout, or with ``algorithm.filter_groups`` (DAPO dynamic sampling) as many as needed to
        fill the batch with groups whose episode rewards differ (bounded by ``max_num_gen_batches``)."""
        fg = self.cfg.algorithm.filter_groups
        result = self._rollout_once(step, 0)
        metrics = rollout_metrics(result)
        if not fg.enable:
            return result.samples, metrics
        wanted = self.cfg.data.train_batch_size
        kept: list[DataProto] = []
        n_groups, attempt = 0, 0
        while True:
            samples = result.samples
            keep = core_algos.groups_with_reward_variance(samples.non_tensor_batch["uid"],
                                                          samples.non_tensor_batch["episode_reward"].astype(float))
            if keep.any():
                kept.append(samples.select_idxs(keep))
                n_groups += len(set(samples.non_tensor_batch["uid"][keep]))
            attempt += 1
            if n_groups >= wanted or attempt >= fg.max_num_gen_batches:
                break
            result = self._rollout_once(step, attempt)
        metrics["filter_groups/num_gen_batches"] = float(attempt)
        metrics["filter_groups/kept_groups"] = float(n_groups)
        if not kept:  # nothing to learn from: train on the last batch (all advantages are zero)
            return result.samples, metrics
        batch = DataProto.concat(kept)
        uids = list(dict.fromkeys(batch.non_tensor_batch["uid"]))[:wanted]
        return batch.select_idxs(np.isin(batch.non_tensor_batch["uid"], uids)), metrics

    # -------------------------------------------------------------------------- rewards/advantage
    @property
    def _use_ref(self) -> bool:
        return bool(self.cfg.actor_rollout_ref.actor.use_kl_loss or self.cfg.algorithm.use_kl_in_reward)

    def _compute_rewards(self, batch: DataProto) -> None:
        scores = self.reward_fn(batch)
        if self.compression_reward is not None:
            bonus = self.compression_reward.bonus(batch, self.global_step)
            scores = scores + place_reward_on_last_token(bonus, batch.batch["response_mask"])
        actor = self.cfg.actor_rollout_ref.actor
        if actor.use_invalid_action_penalty:
            scores, batch.batch["invalid_action_penalty"] = core_algos.invalid_action_penalty(
                scores, batch.batch["response_mask"], batch.non_tensor_batch["is_action_valid"].astype(bool),
                actor.invalid_action_penalty_coef)
        batch.batch["token_level_scores"] = scores

    def _apply_kl_in_reward(self, batch: DataProto) -> dict[str, float]:
        scores = batch.batch["token_level_scores"]
        if not self.cfg.algorithm.use_kl_in_reward:
            batch.batch["token_level_rewards"] = scores
            return {}
        rewards, mean_kl = core_algos.apply_kl_penalty(
            scores, batch.batch["old_log_probs"], batch.batch["ref_log_prob"], batch.batch["response_mask"],
            self.kl_ctrl.value, self.cfg.algorithm.kl_penalty)
        batch.batch["token_level_rewards"] = rewards
        metrics = {"actor/reward_kl_penalty": mean_kl, "actor/reward_kl_penalty_coeff": self.kl_ctrl.value}
        self.kl_ctrl.update(mean_kl, n_steps=self.cfg.data.train_batch_size)
        return metrics

    def _compute_advantage(self, batch: DataProto) -> None:
        alg = self.cfg.algorithm
        b, nt = batch.batch, batch.non_tensor_batch
        rewards, mask = b["token_level_rewards"], b["response_mask"]
        name = alg.adv_estimator
        if name == "grpo":
            adv, ret = core_algos.compute_grpo_outcome_advantage(
                rewards, mask, nt["uid"], nt["traj_uid"], norm_adv_by_std_in_grpo=alg.norm_adv_by_std_in_grpo)
        elif name == "gigpo":
            step_returns = core_algos.compute_step_discounted_returns(
                nt["step_reward"].astype(float), nt["traj_uid"], nt["step_id"].astype(int), alg.gamma,
                step_penalty_B=b.get("invalid_action_penalty"))
            adv, ret = core_algos.compute_gigpo_outcome_advantage(
                rewards, step_returns, mask, nt["anchor_obs"], nt["uid"], nt["traj_uid"],
                step_advantage_w=alg.gigpo.step_advantage_w, mode=alg.gigpo.mode,
                enable_similarity=alg.gigpo.enable_similarity, similarity_thresh=alg.gigpo.similarity_thresh)
        elif name == "gae":
            adv, ret = core_algos.compute_gae_advantage_return(rewards, b["values"], mask, alg.gamma, alg.lam)
        elif name == "rloo":
            adv, ret = core_algos.compute_rloo_outcome_advantage(rewards, mask, nt["uid"])
        elif name == "reinforce_plus_plus":
            adv, ret = core_algos.compute_reinforce_plus_plus_outcome_advantage(rewards, mask, alg.gamma)
        else:
            core_algos.get_adv_estimator(name)  # raises with the list of valid names
            raise AssertionError(name)
        b["advantages"], b["returns"] = adv, ret

    # ------------------------------------------------------------------------------------ update
    def _update(self, wg: RayWorkerGroup, method: str, batch: DataProto, mini_batch_tasks: int) -> dict[str, float]:
        """Lay the batch out so global mini-batch k is identical for any number of ranks, then update.

        A mini-batch is ``mini_batch_tasks x env.rollout.n`` step samples (verl-agent's convention)."""
        chunks = layout_mini_batches(batch, wg.world_size, mini_batch_tasks * self.group_n)
        outs = wg.execute_per_rank(method, chunks)
        keys = outs[0].meta_info["metrics"].keys()
        return {k: float(np.mean([o.meta_info["metrics"][k] for o in outs])) for k in keys}

    # -------------------------------------------------------------------------------- validation
    def _val_sampling(self) -> dict[str, Any]:
        v = self.cfg.actor_rollout_ref.rollout.val_kwargs
        return {"do_sample": v.do_sample, "temperature": v.temperature, "top_p": v.top_p, "top_k": v.top_k}

    def evaluate(self, envs: EnvironmentManagerBase, tasks: list[dict], context_fn: SkillContextFn,
                 log_name: str) -> RolloutResult:
        """Play every task once with ``context_fn`` as the skill context. Tasks, env seeds and sampling
        seeds depend only on the task's position, so two calls with different skills are paired. Which
        tasks validation and the final test play: :mod:`verl.trainer.ppo.evaluation`."""
        envs.set_skill_context_fn(context_fn)
        n = envs.num_envs
        won, tags, cats = [], [], []
        counts: dict[str, float] = {}
        batches = progress_bar(self.cfg.trainer.progress_bar, iterable=range(0, len(tasks), n), desc=log_name,
                               total=math.ceil(len(tasks) / n), unit="batch", leave=False)
        for start in batches:
            chunk = tasks[start: start + n]
            real = len(chunk)
            chunk = chunk + [tasks[i % len(tasks)] for i in range(n - real)]  # pad; padded results dropped
            seeds = [derive_seed(self.cfg.env.seed, "val", start + i) for i in range(n)]
            sampling = {**self._val_sampling(), "seed": derive_seed(self.cfg.trainer.seed, "val", start)}
            res = self.collector.collect(chunk, seeds, 1, envs, self._generate, sampling,
                                         log_name=f"{log_name}_{start}")
            won.append(res.won[:real])
            tags += res.metric_tags[:real]
            cats += res.categories[:real]
            for key, value in res.env_counts.items():
                counts[key] = counts.get(key, 0.0) + value
        return RolloutResult(DataProto(), np.concatenate(won), np.zeros(0), np.zeros(0), tags, cats,
                             env_counts=counts)

    def _validate(self, step: int) -> dict[str, float]:
        if self.skills is not None:
            return self.skills.validate(self, step)
        result = self.evaluate(self.envs.val, self.val_tasks, self.envs.val.skill_context_fn, f"val_step_{step}")
        return {f"val/{k}": v for k, v in evaluation_metrics(result).items()}

    def _final_test(self) -> dict[str, float]:
        if self.envs.test is None:
            self.envs.test = self.make_test_envs()
        if self.skills is not None:
            return self.skills.final_test(self, self.envs.test)
        result = self.evaluate(self.envs.test, self.test_tasks, no_skills, "test")
        return {f"test/{k}": v for k, v in evaluation_metrics(result).items()}

    # ------------------------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, metrics: dict[str, Any]) -> None:
        """Save the step; ``metrics`` (its metrics row so far) goes into the trainer state, so a run killed
        after the save but before the row reached metrics.jsonl gets the row back on resume."""
        def write(tmp: Path) -> None:
            self.actor_wg.execute_all("save_checkpoint", str(tmp / "actor"))
            if self.critic_wg is not None:
                self.critic_wg.execute_all("save_checkpoint", str(tmp / "critic"))

        state = {"global_step": self.global_step, "dataloader": self.train_loader.state_dict(),
                 "kl_coef": self.kl_ctrl.value,
                 "skills": self.skills.state_dict() if self.skills is not None else None,
                 "metrics": jsonable_metrics(metrics)}
        self.ckpt.save(self.global_step, write, state)

    def _load_checkpoint(self) -> None:
        path = self.resume_from
        if path is None:
            return
        state = read_trainer_state(path)
        self.actor_wg.execute_all("load_checkpoint", str(path / "actor"))
        if self.critic_wg is not None:
            self.critic_wg.execute_all("load_checkpoint", str(path / "critic"))
        self.global_step = int(state["global_step"])
        self.train_loader.load_state_dict(state["dataloader"])
        self.kl_ctrl.value = float(state["kl_coef"])
        self.resumed_row = state.get("metrics")  # absent in checkpoints written before rows were saved
        if self.skills is not None and state.get("skills") is not None:
            self.skills.load_state_dict(state["skills"])
        print(f"resumed from {path} at global step {self.global_step}", flush=True)
