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

from agent_system.environments import make_env_manager
from verl.single_controller import RayWorkerGroup
from verl.trainer.config.schema import register_schema
from verl.trainer.config.validate import ConfigError, validate_config
from verl.trainer.ppo.ray_trainer import Envs, RayPPOTrainer
from verl.trainer.ppo.skill_schedule import build_skill_schedule
from verl.utils.dataset import TaskSlotLoader, load_task_slots
from verl.utils.model import load_tokenizer, resolve_model_path
from verl.utils.progress import quiet_ray_auth_notice
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
        model_path = resolve_model_path(cfg.actor_rollout_ref.model.path)
        tokenizer = load_tokenizer(model_path)
        train_tasks = load_task_slots(cfg.data.train_files, "data.train_files")
        val_tasks = load_task_slots(cfg.data.val_files, "data.val_files")
        test_tasks = load_task_slots(cfg.data.test_files, "data.test_files") if cfg.data.test_files else val_tasks
        loader = TaskSlotLoader(train_tasks, cfg.data.train_batch_size, cfg.data.shuffle, cfg.data.seed)
        steps = total_steps(cfg, loader)
        skills = build_skill_schedule(cfg, steps)  # checks the curriculum schedule before anything starts

        world_size = cfg.trainer.nnodes * cfg.trainer.n_gpus_per_node
        if not ray.is_initialized():
            quiet_ray_auth_notice()  # Ray's notice that this local cluster has token auth on (verl.utils.progress)
            ray.init(num_cpus=cfg.ray_init.num_cpus or ray_cpus_needed(cfg, world_size), include_dashboard=False,
                     runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
        self.envs = Envs(
            train=make_env_manager(cfg.env, "train", cfg.data.train_batch_size * cfg.env.rollout.n),
            val=make_env_manager(cfg.env, "val", min(cfg.data.val_batch_size, len(val_tasks))),
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
        self.trainer = RayPPOTrainer(
            cfg, tokenizer, self.actor_wg, self.critic_wg, self.envs, loader, val_tasks, test_tasks, steps, skills,
            make_test_envs=lambda: make_env_manager(cfg.env, "test", min(cfg.data.val_batch_size, len(test_tasks))))

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
