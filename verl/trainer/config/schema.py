"""Typed schema of the trainer config: every knob, its type and its meaning.

Default *values* live in ``ppo_trainer.yaml`` (what users read and override); this module gives Hydra
the *types*, so ``trainer.test_freq=ten`` or an unknown key fails while the command line is parsed,
naming the key. Cross-field rules (choices, divisibility, files that must exist) are checked by
:func:`verl.trainer.config.validate.validate_config` before any worker starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


def _section(cls):  # nested sections are built from their own defaults (all MISSING)
    return field(default_factory=cls)


@dataclass
class DataConfig:
    train_files: Any = MISSING  # parquet file or list of files of training task slots
    val_files: Any = MISSING  # parquet file(s) of validation task slots
    test_files: Any = MISSING  # final-test task slots (trainer.test_after_train); null = val_files
    max_prompt_length: int = MISSING  # tokens; step prompts are left-padded to this length
    max_response_length: int = MISSING  # generation cap per step
    train_batch_size: int = MISSING  # tasks per training step (each played env.rollout.n times)
    val_batch_size: int = MISSING  # tasks per validation batch (n = 1)
    return_raw_chat: bool = MISSING
    truncation: str = MISSING  # left | right | error
    filter_overlong_prompts: bool = MISSING
    shuffle: bool = MISSING
    seed: int = MISSING


@dataclass
class ModelConfig:
    path: str = MISSING
    enable_gradient_checkpointing: bool = MISSING
    use_remove_padding: bool = MISSING
    trust_remote_code: bool = MISSING
    lora_rank: int = MISSING  # LoRA rank r of the actor's adapters; 0 = full fine-tuning (docs/lora.md)
    lora_alpha: float = MISSING  # LoRA scale: the update is (lora_alpha / lora_rank) * B A
    target_modules: Any = MISSING  # all-linear | list of module names that get adapters
    exclude_modules: Any = MISSING  # null | list of module names (or a regex) kept out of target_modules


@dataclass
class OptimConfig:
    lr: float = MISSING
    lr_warmup_steps_ratio: float = MISSING  # linear warm-up over this fraction of total steps
    weight_decay: float = MISSING
    betas: List[float] = MISSING


@dataclass
class FSDPConfig:
    param_offload: bool = MISSING  # keep sharded parameters on CPU between uses (GPU only)
    optimizer_offload: bool = MISSING  # keep optimizer state on CPU (GPU only)


@dataclass
class PolicyLossConfig:
    loss_mode: str = MISSING  # vanilla (PPO clip + dual clip) | gspo


@dataclass
class ActorConfig:
    strategy: str = MISSING
    ppo_mini_batch_size: int = MISSING  # x env.rollout.n = step samples per optimizer step
    ppo_micro_batch_size_per_gpu: int = MISSING  # samples per forward/backward on one rank
    ppo_epochs: int = MISSING
    clip_ratio_low: float = MISSING
    clip_ratio_high: float = MISSING
    clip_ratio_c: float = MISSING  # dual-clip constant c (Ye et al., 2020)
    loss_agg_mode: str = MISSING
    entropy_coeff: float = MISSING
    use_kl_loss: bool = MISSING
    # skip forward/backward of samples whose advantage is all 0 when their gradient is exactly 0 (docs/performance.md)
    skip_zero_advantage: bool = MISSING
    kl_loss_coef: float = MISSING
    kl_loss_type: str = MISSING  # kl | abs | mse | low_var_kl
    grad_clip: float = MISSING
    use_invalid_action_penalty: bool = MISSING
    invalid_action_penalty_coef: float = MISSING
    policy_loss: PolicyLossConfig = _section(PolicyLossConfig)
    optim: OptimConfig = _section(OptimConfig)
    fsdp_config: FSDPConfig = _section(FSDPConfig)


@dataclass
class RefFSDPConfig:
    param_offload: bool = MISSING


@dataclass
class RefConfig:
    log_prob_micro_batch_size_per_gpu: int = MISSING
    fsdp_config: RefFSDPConfig = _section(RefFSDPConfig)


@dataclass
class ValKwargs:
    do_sample: bool = MISSING
    temperature: float = MISSING
    top_p: float = MISSING
    top_k: int = MISSING


@dataclass
class RolloutConfig:
    name: str = MISSING  # hf | vllm
    temperature: float = MISSING
    top_p: float = MISSING
    top_k: int = MISSING  # -1 = off
    do_sample: bool = MISSING
    micro_batch_size: int = MISSING  # prompts per generate call (hf engine)
    log_prob_micro_batch_size_per_gpu: int = MISSING
    gpu_memory_utilization: float = MISSING  # vllm
    kv_cache_memory_gib: Optional[float] = MISSING  # vllm: KV cache per engine; null = from gpu_memory_utilization
    tensor_model_parallel_size: int = MISSING  # vllm
    max_model_len: Optional[int] = MISSING  # vllm
    enforce_eager: bool = MISSING  # vllm
    free_cache_engine: bool = MISSING  # vllm
    enable_chunked_prefill: bool = MISSING  # vllm
    val_kwargs: ValKwargs = _section(ValKwargs)


@dataclass
class ActorRolloutRefConfig:
    model: ModelConfig = _section(ModelConfig)
    actor: ActorConfig = _section(ActorConfig)
    ref: RefConfig = _section(RefConfig)
    rollout: RolloutConfig = _section(RolloutConfig)


@dataclass
class CriticModelConfig:
    path: str = MISSING
    enable_gradient_checkpointing: bool = MISSING
    use_remove_padding: bool = MISSING
    fsdp_config: FSDPConfig = _section(FSDPConfig)


@dataclass
class CriticConfig:
    model: CriticModelConfig = _section(CriticModelConfig)
    optim: OptimConfig = _section(OptimConfig)
    ppo_mini_batch_size: int = MISSING
    ppo_micro_batch_size_per_gpu: int = MISSING
    ppo_epochs: int = MISSING
    cliprange_value: float = MISSING
    grad_clip: float = MISSING
    loss_agg_mode: str = MISSING


@dataclass
class KLCtrlConfig:
    type: str = MISSING  # fixed | adaptive
    kl_coef: float = MISSING
    horizon: int = MISSING
    target_kl: float = MISSING


@dataclass
class GiGPOConfig:
    step_advantage_w: float = MISSING
    mode: str = MISSING  # mean_norm | mean_std_norm
    enable_similarity: bool = MISSING
    similarity_thresh: float = MISSING


@dataclass
class FilterGroupsConfig:
    enable: bool = MISSING
    max_num_gen_batches: int = MISSING


@dataclass
class AlgorithmConfig:
    adv_estimator: str = MISSING
    gamma: float = MISSING
    lam: float = MISSING
    norm_adv_by_std_in_grpo: bool = MISSING
    use_kl_in_reward: bool = MISSING
    kl_penalty: str = MISSING
    kl_ctrl: KLCtrlConfig = _section(KLCtrlConfig)
    gigpo: GiGPOConfig = _section(GiGPOConfig)
    filter_groups: FilterGroupsConfig = _section(FilterGroupsConfig)


@dataclass
class EnvRolloutConfig:
    n: int = MISSING


@dataclass
class ResourcesPerWorker:
    num_cpus: float = MISSING


@dataclass
class CurriculumConfig:
    enable: bool = MISSING
    max_set_schedule: List[int] = MISSING
    skill_mapping_file: Optional[str] = MISSING


@dataclass
class AlfworldConfig:
    eval_dataset: str = MISSING
    data_path: Optional[str] = MISSING


@dataclass
class SearchConfig:
    search_url: Any = MISSING  # str or list of str; "local:<index dir>" for an in-process retriever
    topk: int = MISSING
    timeout: float = MISSING
    max_retries: int = MISSING  # retries of a failed request (connection error, timeout, 408/429/5xx)
    retry_backoff: float = MISSING  # seconds; waits retry_backoff * 2**attempt between attempts
    max_outage_s: float = MISSING  # stop the run once every request to a URL failed for this long
    concurrency: int = MISSING  # parallel requests to a server that takes one query per request


@dataclass
class EchoConfig:
    words: List[str] = MISSING


@dataclass
class MachinesConfig:
    press_reward: float = MISSING  # reward of each right press that does not start the machine (0 = binary)


@dataclass
class EnvConfig:
    env_name: str = MISSING
    seed: int = MISSING
    max_steps: int = MISSING
    history_length: int = MISSING
    rollout: EnvRolloutConfig = _section(EnvRolloutConfig)
    resources_per_worker: ResourcesPerWorker = _section(ResourcesPerWorker)
    num_workers: Optional[int] = MISSING  # ALFWorld env processes per split; null: ceil(envs x resources_per_worker.num_cpus)
    step_timeout_s: float = MISSING  # a remote env call (reset/step) unanswered this long: worker replaced, episode failed
    use_skill: bool = MISSING
    skill_file: Optional[str] = MISSING
    skill_scope: str = MISSING  # category (general + the category's file, as the reference) | all_files
    curriculum_learning: CurriculumConfig = _section(CurriculumConfig)
    alfworld: AlfworldConfig = _section(AlfworldConfig)
    search: SearchConfig = _section(SearchConfig)
    echo: EchoConfig = _section(EchoConfig)
    machines: MachinesConfig = _section(MachinesConfig)


@dataclass
class CompressionConfig:
    enable: bool = MISSING  # the agent writes <compression>c</compression>; c in [1, 5] shrinks the next image
    compression_factor_max: float = MISSING  # accepted for compatibility; unused, as in the reference (clamp is 5)
    compression_reward_coef: float = MISSING  # successful episodes: + coef x ln(c) per step sample
    compression_failure_penalty_coef: float = MISSING  # failed episodes: - coef x ln(c) per step sample
    compression_reward_every_n_steps: int = MISSING  # the bonus applies on every n-th training step only


@dataclass
class CompactModeConfig:
    enable: bool = MISSING  # render the history window as one paragraph joined by `symbol`
    symbol: str = MISSING


@dataclass
class OCRConfig:
    use_ocr: bool = MISSING  # visual context (AgentOCR mode): the history is an image for a Qwen2.5-VL policy
    use_parallel: bool = MISSING  # render new history entries in a process pool
    max_workers: Optional[int] = MISSING  # pool size; null = min(32, CPU count)
    font_size: int = MISSING
    padding: int = MISSING  # border (px) added around the (compressed) history image
    bg_color: List[int] = MISSING
    text_color: List[int] = MISSING
    font_path: Optional[str] = MISSING  # null = DejaVu Sans Mono shipped with matplotlib
    min_width: int = MISSING  # blank image width; floor of a compressed width
    max_width: int = MISSING  # rendered width; text wraps to floor(max_width / character width)
    min_height: int = MISSING
    max_height: int = MISSING  # taller histories drop their oldest lines
    compact_mode: CompactModeConfig = _section(CompactModeConfig)
    highlight_configs: Any = MISSING  # null | "text:r,g,b;..." | [{context: text, color: [r, g, b]}]
    agent_select_compression: CompressionConfig = _section(CompressionConfig)


@dataclass
class RayInitConfig:
    address: Optional[str] = MISSING  # join this running cluster (also $RAY_ADDRESS); null = start a local one
    num_cpus: Optional[int] = MISSING  # CPUs of the local cluster; null = what the run needs (at least all cores)


@dataclass
class TrainerConfig:
    project_name: str = MISSING
    experiment_name: str = MISSING
    logger: List[str] = MISSING
    device: str = MISSING
    nnodes: int = MISSING
    n_gpus_per_node: int = MISSING
    seed: int = MISSING
    total_epochs: int = MISSING
    total_training_steps: Optional[int] = MISSING
    critic_warmup: int = MISSING
    test_freq: int = MISSING
    save_freq: int = MISSING
    val_before_train: bool = MISSING
    test_after_train: bool = MISSING
    log_prompts: bool = MISSING
    resume_mode: str = MISSING
    resume_from_path: Optional[str] = MISSING
    default_local_dir: str = MISSING
    max_actor_ckpt_to_keep: Optional[int] = MISSING
    max_critic_ckpt_to_keep: Optional[int] = MISSING
    ray_wait_register_center_timeout: int = MISSING
    strict_memory_plan: bool = MISSING  # stop at start-up when the memory plan exceeds the device (else warn)
    progress_bar: bool = MISSING  # tqdm bars (steps, rollout turns, validation batches) when stderr is a terminal


@dataclass
class PPOTrainerConfig:
    data: DataConfig = _section(DataConfig)
    actor_rollout_ref: ActorRolloutRefConfig = _section(ActorRolloutRefConfig)
    critic: CriticConfig = _section(CriticConfig)
    algorithm: AlgorithmConfig = _section(AlgorithmConfig)
    env: EnvConfig = _section(EnvConfig)
    ocr: OCRConfig = _section(OCRConfig)
    ray_init: RayInitConfig = _section(RayInitConfig)
    trainer: TrainerConfig = _section(TrainerConfig)


def register_schema() -> None:
    """Make the schema available to ppo_trainer.yaml's defaults list as ``ppo_trainer_schema``."""
    ConfigStore.instance().store(name="ppo_trainer_schema", node=PPOTrainerConfig)
