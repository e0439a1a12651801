"""Entry point: ``python -m verl.trainer.main_ppo <hydra overrides>``.

Builds everything the trainer needs (config checks, model path, task slots, Ray, environment managers,
worker groups, skills) and hands over to :class:`RayPPOTrainer`. No training logic lives here.
"""

from __future__ import annotations

import os
import sys

import hydra
import ray
from omegaconf import DictConfig, OmegaConf

from agent_system.environments import evaluation_tasks, make_env_manager, ray_workers
from agent_system.environments.env_package.search.client import RetrievalError
from verl.single_controller import RankPool
from verl.single_controller.resources import ClusterTooSmall, Demand, ResourcePlan
from verl.trainer.config.schema import register_schema
from verl.trainer.config.validate import ConfigError, validate_config, warn_inert_settings
from verl.trainer.ppo.evaluation import eval_num_envs, validation_tasks
from verl.trainer.ppo.ray_trainer import Envs, RayPPOTrainer
from verl.trainer.ppo.skill_schedule import build_skill_schedule
from verl.utils import lora
from verl.utils.checkpoint import CheckpointManager, CheckpointSaveError
from verl.utils.dataset import TaskSlotLoader, load_task_slots
from verl.utils.memory_plan import MemoryPlanError, check_plan, plan_for_run, render
from verl.utils.model import is_vision_model, load_tokenizer, resolve_model_path
from verl.utils.ray_utils import cluster_address, init_ray
from verl.utils.vision import VisionPrompt, require_vision_model
from verl.workers.fsdp_workers import ActorRolloutRefWorker, CriticWorker

register_schema()

RANK_CPUS = 1.0  # logical CPUs reserved per rank process
# What start-up raises for bad configs, model paths, data, skill files, clusters too small and memory plans over
# the device (each names the key/file and the fix); ``main`` prints these without a traceback.
# Catalogue: tests/verl/trainer/test_startup_errors.py.
STARTUP_ERRORS = (ConfigError, ValueError, FileNotFoundError, ClusterTooSmall, MemoryPlanError)
# What stops a running job from outside the training: a checkpoint write that failed (e.g. disk full), a
# retrieval server down for longer than env.search.max_outage_s. ``main`` prints :func:`stop_message`
# without a traceback and exits 3 (docs/reliability.md).
RUN_STOPPING_ERRORS = (CheckpointSaveError, RetrievalError)


def stop_message(err: Exception, checkpoint_dir: str) -> str:
    """One line: what stopped the run, and where ``trainer.resume_mode=auto`` will resume from."""
    if isinstance(err, CheckpointSaveError):
        return f"SkillZero stopped: {err}"  # it names the checkpoint resume picks and the fix itself
    latest = CheckpointManager(checkpoint_dir).latest()
    resume = f"resumes from {latest}" if latest else "starts from step 0 (no checkpoint was saved yet)"
    return (f"SkillZero stopped: {err}. Once it answers again, rerun the same command: trainer.resume_mode=auto "
            f"{resume}")


def total_steps(cfg: DictConfig, loader: TaskSlotLoader) -> int:
    """``trainer.total_training_steps`` when set (honoured exactly), else epochs x batches per epoch."""
    return cfg.trainer.total_training_steps or cfg.trainer.total_epochs * len(loader)


def env_sizes(cfg: DictConfig, n_val_tasks: int, n_test_tasks: int) -> dict[str, int]:
    """Parallel envs per split: train plays every task's group at once, val/test even batches of at most
    ``data.val_batch_size`` tasks (:func:`verl.trainer.ppo.evaluation.eval_num_envs`)."""
    return {"train": cfg.data.train_batch_size * cfg.env.rollout.n,
            "val": eval_num_envs(n_val_tasks, cfg.data.val_batch_size),
            "test": eval_num_envs(n_test_tasks, cfg.data.val_batch_size) if cfg.trainer.test_after_train else 0}


def resource_plan(cfg: DictConfig, world_size: int, envs: dict[str, int]) -> ResourcePlan:
    """Every Ray actor of the run: the ranks (all roles colocated) and each split's env workers."""
    ranks = Demand("ranks (actor, rollout, reference, critic colocated)", world_size, RANK_CPUS,
                   1.0 if cfg.trainer.device == "cuda" else 0.0, "trainer.nnodes x trainer.n_gpus_per_node")
    sizes = {"train": "data.train_batch_size x env.rollout.n", "val": "data.val_batch_size",
             "test": "data.val_batch_size, trainer.test_after_train"}
    keys = "env.num_workers, env.resources_per_worker.num_cpus"
    return ResourcePlan([ranks] + [
        Demand(f"{split} env workers", *ray_workers(cfg.env, n), keys=f"{sizes[split]}; {keys}")
        for split, n in envs.items() if n > 0])


class Run:
    """Everything one training run owns; ``close()`` releases workers and environments."""

    def __init__(self, cfg: DictConfig):
        validate_config(cfg)
        warn_inert_settings(cfg)
        t = cfg.trainer  # which checkpoint to resume from is settled before anything starts
        resume_from = CheckpointManager(t.default_local_dir).resume_path(t.resume_mode, t.resume_from_path)
        model_path = resolve_model_path(cfg.actor_rollout_ref.model.path)
        trust = cfg.actor_rollout_ref.model.trust_remote_code
        lora.check_model(cfg.actor_rollout_ref.model, model_path, trust)
        if cfg.actor_rollout_ref.rollout.name == "vllm" and is_vision_model(model_path, trust):
            # vLLM renames a VL model's parameters: its weight-sync probe would find none of the streamed names
            raise ValueError(f"actor_rollout_ref.model.path={model_path!r} is a vision-language model, which the "
                             "vllm engine does not serve here; set actor_rollout_ref.rollout.name=hf")
        tokenizer = load_tokenizer(model_path, trust)
        vision = None
        if cfg.ocr.use_ocr:  # visual mode: a Qwen2.5-VL policy reads the history as an image
            require_vision_model(model_path, trust)
            vision = VisionPrompt.from_pretrained(tokenizer, model_path)
        train_tasks = load_task_slots(cfg.data.train_files, "data.train_files")
        val_slots = load_task_slots(cfg.data.val_files, "data.val_files")
        test_slots = load_task_slots(cfg.data.test_files, "data.test_files") if cfg.data.test_files else val_slots
        val_tasks = validation_tasks(evaluation_tasks(cfg.env, "val", val_slots), len(val_slots), cfg.env.seed)
        test_tasks = evaluation_tasks(cfg.env, "test", test_slots)
        loader = TaskSlotLoader(train_tasks, cfg.data.train_batch_size, cfg.data.shuffle, cfg.data.seed)
        steps = total_steps(cfg, loader)
        skills = build_skill_schedule(cfg, steps)  # checks the curriculum schedule before anything starts

        world_size = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node
        sizes = env_sizes(cfg, len(val_tasks), len(test_tasks))
        plan = resource_plan(cfg, world_size, sizes)
        joining = cluster_address(cfg.ray_init.address) is not None
        init_ray(cfg.ray_init.address,
                 num_cpus=cfg.ray_init.num_cpus or (None if joining else plan.local_cpus(os.cpu_count() or 1)))
        plan.check(ray.cluster_resources())
        print(plan.summary(), flush=True)
        self.pool: RankPool | None = None
        self.envs = Envs(train=None, val=None)
        try:
            config = OmegaConf.to_container(cfg, resolve=True)
            roles = {"actor": (ActorRolloutRefWorker, dict(
                config=config, model_path=model_path, total_training_steps=steps,
                with_ref=cfg.actor_rollout_ref.actor.use_kl_loss or cfg.algorithm.use_kl_in_reward))}
            critic_path = None
            if cfg.algorithm.adv_estimator == "gae":
                critic_path = resolve_model_path(cfg.critic.model.path, "critic.model.path")
                roles["critic"] = (CriticWorker, dict(config=config, model_path=critic_path,
                                                      total_training_steps=steps, seed=cfg.trainer.seed))
            self.pool = RankPool(roles, world_size, cfg.trainer.device, cfg.trainer.ray_wait_register_center_timeout,
                                 cpus_per_rank=RANK_CPUS)
            print(f"ranks placed on one placement group of {world_size} x {self.pool.bundle}: "
                  f"{self.pool.placement()}", flush=True)
            plan = plan_for_run(cfg, model_path, critic_path, min(self.pool.execute_all("device_memory")))
            print(render(plan), flush=True)
            check_plan(plan, cfg.trainer.strict_memory_plan)
            self.envs.train = make_env_manager(cfg.env, "train", sizes["train"], cfg.ocr)
            self.envs.val = make_env_manager(cfg.env, "val", sizes["val"], cfg.ocr)
            for role in roles:
                self.pool.group(role).execute_all("init_model")
        except BaseException:
            self.close()
            raise
        self.trainer = RayPPOTrainer(
            cfg, tokenizer, self.pool.group("actor"), self.pool.group("critic") if "critic" in roles else None,
            self.envs, loader, val_tasks, test_tasks, steps, skills,
            make_test_envs=lambda: make_env_manager(cfg.env, "test", sizes["test"], cfg.ocr),
            resume_from=resume_from, vision=vision)

    def close(self) -> None:
        for manager in (self.envs.train, self.envs.val, self.envs.test):
            if manager is not None:
                manager.close()
        if self.pool is not None:
            self.pool.shutdown()


def run_ppo(cfg: DictConfig) -> None:
    run = Run(cfg)
    try:
        run.trainer.fit()
    finally:
        run.close()


@hydra.main(config_path="config", config_name="ppo_trainer", version_base=None)
def main(cfg: DictConfig) -> None:
    try:
        run = Run(cfg)
    except STARTUP_ERRORS as err:  # bad config, model path, data or resources: no traceback
        print(f"SkillZero could not start: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        run.trainer.fit()
    except RUN_STOPPING_ERRORS as err:  # disk full, retriever down: the message says what resume picks
        print(stop_message(err, cfg.trainer.default_local_dir), file=sys.stderr)
        sys.exit(3)
    finally:
        run.close()


if __name__ == "__main__":
    main()
