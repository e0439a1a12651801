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

from agent_system.environments import evaluation_tasks, make_env_manager
from verl.single_controller import RayWorkerGroup
from verl.trainer.config.schema import register_schema
from verl.trainer.config.validate import ConfigError, validate_config
from verl.trainer.ppo.evaluation import eval_num_envs, validation_tasks
from verl.trainer.ppo.ray_trainer import Envs, RayPPOTrainer
from verl.trainer.ppo.skill_schedule import build_skill_schedule
from verl.utils.checkpoint import CheckpointManager
from verl.utils.dataset import TaskSlotLoader, load_task_slots
from verl.utils.model import is_vision_model, load_tokenizer, resolve_model_path
from verl.utils.progress import quiet_ray_auth_notice
from verl.utils.vision import VisionPrompt, require_vision_model
from verl.workers.fsdp_workers import ActorRolloutRefWorker, CriticWorker

register_schema()


def total_steps(cfg: DictConfig, loader: TaskSlotLoader) -> int:
    """``trainer.total_training_steps`` when set (honoured exactly), else epochs x batches per epoch."""
    return cfg.trainer.total_training_steps or cfg.trainer.total_epochs * len(loader)


def ray_cpus_needed(cfg: DictConfig, world_size: int) -> int:
    """Logical CPUs for rank actors (1 each) plus env workers (fractional each), at least the machine's."""
    n_env = (cfg.data.train_batch_size * cfg.env.rollout.n + cfg.data.val_batch_size)
    return max(os.cpu_count() or 1, int(world_size + 2 + n_env * cfg.env.resources_per_worker.num_cpus + 0.999))


class Run:
    """Everything one training run owns; ``close()`` releases workers and environments."""

    def __init__(self, cfg: DictConfig):
        validate_config(cfg)
        t = cfg.trainer  # which checkpoint to resume from is settled before anything starts
        resume_from = CheckpointManager(t.default_local_dir).resume_path(t.resume_mode, t.resume_from_path)
        model_path = resolve_model_path(cfg.actor_rollout_ref.model.path)
        if cfg.actor_rollout_ref.rollout.name == "vllm" and is_vision_model(model_path):
            # vLLM renames a VL model's parameters: its weight-sync probe would find none of the streamed names
            raise ValueError(f"actor_rollout_ref.model.path={model_path!r} is a vision-language model, which the "
                             "vllm engine does not serve here; set actor_rollout_ref.rollout.name=hf")
        tokenizer = load_tokenizer(model_path)
        vision = None
        if cfg.ocr.use_ocr:  # visual mode: a Qwen2.5-VL policy reads the history as an image
            require_vision_model(model_path)
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
        if not ray.is_initialized():
            quiet_ray_auth_notice()  # Ray's notice that this local cluster has token auth on (verl.utils.progress)
            ray.init(num_cpus=cfg.ray_init.num_cpus or ray_cpus_needed(cfg, world_size), include_dashboard=False,
                     runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
        self.envs = Envs(
            train=make_env_manager(cfg.env, "train", cfg.data.train_batch_size * cfg.env.rollout.n, cfg.ocr),
            val=make_env_manager(cfg.env, "val", eval_num_envs(len(val_tasks), cfg.data.val_batch_size), cfg.ocr),
        )
        self.actor_wg = self.critic_wg = None
        try:
            config = OmegaConf.to_container(cfg, resolve=True)
            use_ref = cfg.actor_rollout_ref.actor.use_kl_loss or cfg.algorithm.use_kl_in_reward
            wg_kwargs = dict(device=cfg.trainer.device, register_timeout_s=cfg.trainer.ray_wait_register_center_timeout)
            self.actor_wg = RayWorkerGroup(ActorRolloutRefWorker, world_size, init_kwargs=dict(
                config=config, model_path=model_path, total_training_steps=steps, with_ref=use_ref), **wg_kwargs)
            if cfg.algorithm.adv_estimator == "gae":
                self.critic_wg = RayWorkerGroup(CriticWorker, world_size, init_kwargs=dict(
                    config=config, model_path=resolve_model_path(cfg.critic.model.path), total_training_steps=steps,
                    seed=cfg.trainer.seed), **wg_kwargs)
            self.actor_wg.execute_all("init_model")
            if self.critic_wg is not None:
                self.critic_wg.execute_all("init_model")
        except BaseException:
            self.close()
            raise
        num_test_envs = eval_num_envs(len(test_tasks), cfg.data.val_batch_size)
        self.trainer = RayPPOTrainer(
            cfg, tokenizer, self.actor_wg, self.critic_wg, self.envs, loader, val_tasks, test_tasks, steps, skills,
            make_test_envs=lambda: make_env_manager(cfg.env, "test", num_test_envs, cfg.ocr),
            resume_from=resume_from, vision=vision)

    def close(self) -> None:
        for manager in (self.envs.train, self.envs.val, self.envs.test):
            if manager is not None:
                manager.close()
        for wg in (self.actor_wg, self.critic_wg):
            if wg is not None:
                wg.shutdown()


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
    except (ConfigError, ValueError, FileNotFoundError) as err:  # bad config, model path or data: no traceback
        print(f"SkillZero could not start: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        run.trainer.fit()
    finally:
        run.close()


if __name__ == "__main__":
    main()
