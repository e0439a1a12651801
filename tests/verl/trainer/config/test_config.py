"""The trainer config: every reference key accepted, bad values rejected at start-up with the fix."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException

from tests.conftest import REPO_ROOT, trainer_config
from verl.trainer.config.validate import ConfigError, inert_settings, validate_config, warn_inert_settings
from verl.trainer.ppo.skill_schedule import build_skill_schedule

# Every key the reference SKILL0 / verl-agent launch scripts set (issue #2), with a typical value.
REFERENCE_OVERRIDES = """
actor_rollout_ref.actor.clip_ratio_high=0.28 actor_rollout_ref.actor.clip_ratio_low=0.2
actor_rollout_ref.actor.entropy_coeff=0.001 actor_rollout_ref.actor.fsdp_config.optimizer_offload=False
actor_rollout_ref.actor.fsdp_config.param_offload=False actor_rollout_ref.actor.invalid_action_penalty_coef=0.1
actor_rollout_ref.actor.kl_loss_coef=0.01 actor_rollout_ref.actor.kl_loss_type=low_var_kl
actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.optim.lr_warmup_steps_ratio=0.0
actor_rollout_ref.actor.policy_loss.loss_mode=vanilla actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=8
actor_rollout_ref.actor.ppo_mini_batch_size=16 actor_rollout_ref.actor.use_invalid_action_penalty=True
actor_rollout_ref.actor.use_kl_loss=False actor_rollout_ref.model.enable_gradient_checkpointing=True
actor_rollout_ref.model.path=smollm2-135m-instruct actor_rollout_ref.model.use_remove_padding=True
actor_rollout_ref.ref.fsdp_config.param_offload=True actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=16
actor_rollout_ref.rollout.enable_chunked_prefill=False actor_rollout_ref.rollout.enforce_eager=False
actor_rollout_ref.rollout.free_cache_engine=False actor_rollout_ref.rollout.gpu_memory_utilization=0.6
actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=16 actor_rollout_ref.rollout.max_model_len=4096
actor_rollout_ref.rollout.name=hf actor_rollout_ref.rollout.tensor_model_parallel_size=1
actor_rollout_ref.rollout.val_kwargs.do_sample=True actor_rollout_ref.rollout.val_kwargs.temperature=0.4
algorithm.adv_estimator=gigpo algorithm.filter_groups.enable=False algorithm.filter_groups.max_num_gen_batches=10
algorithm.gamma=0.95 algorithm.gigpo.enable_similarity=False algorithm.gigpo.mode=mean_norm
algorithm.gigpo.similarity_thresh=0.95 algorithm.gigpo.step_advantage_w=1.0 algorithm.use_kl_in_reward=False
critic.model.enable_gradient_checkpointing=True critic.model.fsdp_config.optimizer_offload=False
critic.model.fsdp_config.param_offload=False critic.model.path=smollm2-135m-instruct
critic.model.use_remove_padding=True critic.optim.lr=1e-5 critic.ppo_micro_batch_size_per_gpu=8
data.filter_overlong_prompts=True data.max_prompt_length=2048 data.max_response_length=512
data.return_raw_chat=True data.test_files=/data/test.parquet data.train_batch_size=16 data.train_files=/data/train.parquet
data.truncation=error data.val_batch_size=128 data.val_files=/data/test.parquet
env.curriculum_learning.enable=True env.curriculum_learning.max_set_schedule=[6,3,0]
env.curriculum_learning.skill_mapping_file=skills/alfworld/skill_mapping.json env.env_name=alfworld/AlfredTWEnv
env.history_length=2 env.max_steps=50 env.resources_per_worker.num_cpus=0.1 env.rollout.n=8
env.search.search_url=http://127.0.0.1:8000/retrieve env.search.topk=3 env.seed=0
env.skill_file=skills/alfworld/all_skills.md env.use_skill=False env.alfworld.eval_dataset=eval_in_distribution
ocr.agent_select_compression.compression_reward_coef=0.1 ocr.agent_select_compression.compression_reward_every_n_steps=5
ocr.agent_select_compression.enable=False ocr.font_size=12 ocr.max_width=512 ocr.max_workers=8 ocr.use_ocr=False
ocr.use_parallel=True ray_init.num_cpus=16 trainer.critic_warmup=0 trainer.experiment_name=exp
trainer.logger=[console,wandb] trainer.n_gpus_per_node=4 trainer.nnodes=1 trainer.project_name=proj
trainer.ray_wait_register_center_timeout=300 trainer.resume_mode=auto trainer.save_freq=10
trainer.test_after_train=True trainer.test_freq=10 trainer.total_epochs=150 trainer.total_training_steps=180
trainer.val_before_train=True trainer.default_local_dir=checkpoints/x trainer.device=cpu
""".split()


def test_every_reference_launch_key_is_accepted_with_its_meaning():
    cfg = trainer_config(REFERENCE_OVERRIDES)
    validate_config(cfg)
    assert cfg.algorithm.gigpo.step_advantage_w == 1.0
    assert list(cfg.env.curriculum_learning.max_set_schedule) == [6, 3, 0]
    assert cfg.actor_rollout_ref.rollout.val_kwargs.temperature == 0.4
    assert cfg.critic.ppo_mini_batch_size == 16  # interpolated from the actor's
    schedule = build_skill_schedule(cfg, total_steps=180)
    assert schedule.curriculum.budget(0) == 6 and schedule.curriculum.budget(130) == 0


def test_defaults_are_valid():
    validate_config(trainer_config([]))


def test_unknown_key_is_rejected_naming_it():
    with pytest.raises(ConfigCompositionException) as err:
        trainer_config(["trainer.total_training_step=3"])
    assert "trainer.total_training_step" in str(err.value)


def test_wrong_type_is_rejected_naming_the_key():
    with pytest.raises(ConfigCompositionException) as err:
        trainer_config(["trainer.test_freq=ten"])
    assert "trainer.test_freq" in str(err.value.__cause__) or "trainer.test_freq" in str(err.value)


@pytest.mark.parametrize("override, key, fix", [
    ("algorithm.adv_estimator=ppo2", "algorithm.adv_estimator", "grpo"),
    ("actor_rollout_ref.actor.ppo_mini_batch_size=0", "actor_rollout_ref.actor.ppo_mini_batch_size", ">= 1"),
    ("env.rollout.n=0", "env.rollout.n", ">= 1"),
    ("env.num_workers=0", "env.num_workers", ">= 1, or null"),
    ("env.resources_per_worker.num_cpus=0", "env.resources_per_worker.num_cpus", "must be > 0"),
    ("trainer.device=tpu", "trainer.device", "cpu"),
    ("actor_rollout_ref.rollout.tensor_model_parallel_size=2", "actor_rollout_ref.rollout.tensor_model_parallel_size",
     "set 1"),
    ("actor_rollout_ref.rollout.max_model_len=100", "actor_rollout_ref.rollout.max_model_len",
     "data.max_prompt_length + data.max_response_length = 2560"),
    ("actor_rollout_ref.rollout.kv_cache_memory_gib=0", "actor_rollout_ref.rollout.kv_cache_memory_gib", "> 0"),
    ("ocr.padding=-1", "ocr.padding", ">= 0"),
    ("ocr.max_width=20", "ocr.max_width", ">= ocr.min_width"),
    ("ocr.highlight_configs=x", "ocr.highlight_configs", "text:r,g,b"),
    ("env.use_skill=True", "env.skill_file", "existing skill file"),
])
def test_bad_values_name_the_key_and_the_fix(override, key, fix):
    with pytest.raises(ConfigError) as err:
        validate_config(trainer_config([override]))
    assert key in str(err.value) and fix in str(err.value)


def test_vllm_on_cpu_needs_an_explicit_kv_cache_size():
    with pytest.raises(ConfigError) as err:
        validate_config(trainer_config(["actor_rollout_ref.rollout.name=vllm"]))
    assert "actor_rollout_ref.rollout.kv_cache_memory_gib=None" in str(err.value)
    assert "kv_cache_memory_gib (e.g. 1)" in str(err.value)


no_vllm = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")


@no_vllm
def test_vllm_missing_stops_with_the_install_command():
    with pytest.raises(ConfigError) as err:
        validate_config(trainer_config(["actor_rollout_ref.rollout.name=vllm",
                                        "actor_rollout_ref.rollout.kv_cache_memory_gib=1"]))
    assert "actor_rollout_ref.rollout.name='vllm'" in str(err.value)
    assert "bash scripts/install.sh --vllm" in str(err.value) and "rollout.name=hf" in str(err.value)


# The visual runs of the reference scripts: every ocr.* key with the reference's values.
REFERENCE_OCR_OVERRIDES = """
ocr.use_ocr=True ocr.use_parallel=True ocr.max_workers=32 ocr.font_size=10 ocr.padding=5 ocr.bg_color=[255,255,255]
ocr.text_color=[0,0,0] ocr.font_path=null ocr.min_width=28 ocr.max_width=392 ocr.min_height=28 ocr.max_height=4096
ocr.compact_mode.enable=False ocr.compact_mode.symbol='⏎' ocr.highlight_configs=null
ocr.agent_select_compression.enable=True ocr.agent_select_compression.compression_factor_max=10.0
ocr.agent_select_compression.compression_reward_coef=0.01 ocr.agent_select_compression.compression_failure_penalty_coef=0.0
ocr.agent_select_compression.compression_reward_every_n_steps=8
""".split()


def test_every_reference_ocr_key_is_accepted(recwarn):
    cfg = trainer_config(REFERENCE_OCR_OVERRIDES)
    validate_config(cfg)
    assert cfg.ocr.agent_select_compression.compression_reward_every_n_steps == 8 and cfg.ocr.font_size == 10
    assert not [w for w in recwarn if "ocr" in str(w.message)]


def test_visual_mode_combinations_that_cannot_run_are_startup_errors():
    with pytest.raises(ConfigError) as err:
        validate_config(trainer_config(["ocr.use_ocr=True", "env.env_name=echo", "algorithm.adv_estimator=gae",
                                        "actor_rollout_ref.rollout.name=vllm",
                                        "actor_rollout_ref.rollout.kv_cache_memory_gib=1",
                                        "actor_rollout_ref.model.use_remove_padding=True"]))
    assert "alfworld and search" in str(err.value) and "no vision tower" in str(err.value)
    assert "packs text-only sequences" in str(err.value)
    assert "images reach the policy through the hf rollout engine only" in str(err.value)


def test_ocr_settings_that_change_nothing_warn():
    with pytest.warns(UserWarning, match="ocr.use_ocr=False, so these ocr settings change nothing: ocr.font_size"):
        validate_config(trainer_config(["ocr.font_size=10"]))
    with pytest.warns(UserWarning, match="compression_factor_max is accepted for compatibility but unused"):
        validate_config(trainer_config(["ocr.agent_select_compression.compression_factor_max=3"]))


def test_schedule_that_does_not_divide_the_validations_is_a_startup_error():
    cfg = trainer_config(["env.curriculum_learning.enable=True",
                          "env.curriculum_learning.skill_mapping_file=skills/alfworld/skill_mapping.json",
                          "env.curriculum_learning.max_set_schedule=[6,3,0]", "trainer.test_freq=10"])
    validate_config(cfg)
    with pytest.raises(ConfigError) as err:
        build_skill_schedule(cfg, total_steps=100)  # 10 validations over 3 phases
    assert "max_set_schedule" in str(err.value)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "verl.trainer.main_ppo", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def test_cli_prints_the_composed_config():
    proc = run_cli("--cfg", "job", "trainer.total_training_steps=7")
    assert proc.returncode == 0, proc.stderr
    assert "total_training_steps: 7" in proc.stdout and "adv_estimator: grpo" in proc.stdout


def test_cli_missing_model_path_stops_before_training_with_the_fix():
    proc = run_cli("actor_rollout_ref.model.path=/nonexistent/model")
    assert proc.returncode == 2
    assert "actor_rollout_ref.model.path" in proc.stderr and "config.json" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_unknown_key_fails_fast():
    proc = run_cli("trainer.no_such_key=1")
    assert proc.returncode != 0 and "trainer.no_such_key" in proc.stderr


def test_settings_without_effect_are_listed_once_at_startup():
    cfg = trainer_config(["trainer.device=cpu", "actor_rollout_ref.actor.fsdp_config.optimizer_offload=True",
                          "actor_rollout_ref.ref.fsdp_config.param_offload=True",
                          "actor_rollout_ref.model.use_remove_padding=True",  # packs: has an effect
                          "actor_rollout_ref.actor.entropy_coeff=0.001"])  # zero-advantage rows have a gradient
    inert = inert_settings(cfg)
    assert [line.split("=")[0] for line in inert] == [
        "actor_rollout_ref.actor.fsdp_config.optimizer_offload", "actor_rollout_ref.ref.fsdp_config.param_offload",
        "actor_rollout_ref.actor.skip_zero_advantage"]
    assert "entropy_coeff=0.001" in inert[-1]
    assert inert_settings(trainer_config(["trainer.device=cpu", "actor_rollout_ref.actor.entropy_coeff=0.001",
                                          "actor_rollout_ref.actor.skip_zero_advantage=False"])) == []
    with pytest.warns(UserWarning, match="no effect in this run") as record:
        warn_inert_settings(cfg)
    assert len(record) == 1 and all(line in str(record[0].message) for line in inert)
    assert inert_settings(trainer_config(["trainer.device=cpu"])) == []
    assert inert_settings(trainer_config(["trainer.device=cpu", "env.num_workers=2"])) == []  # ALFWorld: used
    assert [line.split("=")[0] for line in inert_settings(trainer_config(
        ["trainer.device=cpu", "env.env_name=echo", "env.num_workers=2"]))] == ["env.num_workers"]


@no_vllm
def test_cli_vllm_missing_stops_at_startup_with_the_install_command():
    proc = run_cli("actor_rollout_ref.rollout.name=vllm", "actor_rollout_ref.rollout.kv_cache_memory_gib=1")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "bash scripts/install.sh --vllm" in proc.stderr
