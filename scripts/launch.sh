#!/usr/bin/env bash
# Shared launcher behind scripts/train_*.sh (reference SKILL0 hyperparameters, SPEC §6):
#   bash scripts/launch.sh <alfworld|search> <skillzero|grpo|static> <model path or hub id> [hydra overrides...]
# GRPO, group 8, lr 1e-6, no KL, max response 512, 180 steps, test/save every 10, 4 GPUs,
# validation temperature 0.4. ALFWorld: 16 tasks/step, schedule [6,3,0]. Search: 128 tasks/step, [5,3,0].
# Environment variables: N_GPUS (4), DATA_DIR (~/data), DEVICE (cuda), ROLLOUT (vllm with DEVICE=cuda, else hf;
# vllm runs from .venv-vllm when present: bash scripts/install.sh --vllm).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_NAME=${1:?env: alfworld or search}
METHOD=${2:?method: skillzero, grpo or static}
MODEL=${3:?model: a local Hugging Face folder or a hub id}
shift 3
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then ROLLOUT=${ROLLOUT:-vllm}; else ROLLOUT=${ROLLOUT:-hf}; fi
VENV="$ROOT/.venv"
if [ "$ROLLOUT" = vllm ] && [ -x "$ROOT/.venv-vllm/bin/python" ]; then VENV="$ROOT/.venv-vllm"; fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$VENV/bin/python" ]; then
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
cd "$ROOT"
N_GPUS=${N_GPUS:-4}
DATA_DIR=${DATA_DIR:-$HOME/data}
SKILLS="skills/$ENV_NAME"
EXPERIMENT="${ENV_NAME}_${METHOD}_$(basename "$MODEL")"

case "$ENV_NAME" in
  alfworld)
    python examples/data_preprocess/prepare.py --mode text --env alfworld --train_data_size 16 \
      --val_data_size 128 --local_dir "$DATA_DIR/verl-agent" >/dev/null
    ENV_ARGS=(env.env_name=alfworld/AlfredTWEnv env.max_steps=50 env.history_length=2
      data.train_files="$DATA_DIR/verl-agent/text/train.parquet" data.val_files="$DATA_DIR/verl-agent/text/test.parquet"
      data.train_batch_size=16 data.val_batch_size=128 data.max_prompt_length=2048)
    SCHEDULE="[6,3,0]" ;;
  search)
    [ -f "$DATA_DIR/searchR1_processed_direct/train.parquet" ] || python \
      examples/data_preprocess/preprocess_search_r1_dataset.py --local_dir "$DATA_DIR/searchR1_processed_direct" >/dev/null
    ENV_ARGS=(env.env_name=search env.max_steps=4 env.history_length=4
      env.search.search_url=${SEARCH_URL:-http://127.0.0.1:8000/retrieve} env.search.topk=3
      data.train_files="$DATA_DIR/searchR1_processed_direct/train.parquet"
      data.val_files="$DATA_DIR/searchR1_processed_direct/test.parquet"
      data.train_batch_size=128 data.val_batch_size=256 data.max_prompt_length=4096)
    SCHEDULE="[5,3,0]" ;;
  *) echo "unknown env '$ENV_NAME' (alfworld | search)" >&2; exit 2 ;;
esac

case "$METHOD" in
  skillzero) SKILL_ARGS=(env.curriculum_learning.enable=True env.curriculum_learning.max_set_schedule="$SCHEDULE"
               env.curriculum_learning.skill_mapping_file="$SKILLS/skill_mapping.json") ;;
  static)    SKILL_ARGS=(env.use_skill=True env.skill_file="$SKILLS/all_skills.md") ;;
  grpo)      SKILL_ARGS=() ;;
  *) echo "unknown method '$METHOD' (skillzero | grpo | static)" >&2; exit 2 ;;
esac

python -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo algorithm.use_kl_in_reward=False \
  actor_rollout_ref.model.path="$MODEL" \
  actor_rollout_ref.model.enable_gradient_checkpointing=True \
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.use_kl_loss=False \
  actor_rollout_ref.actor.ppo_mini_batch_size=256 actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=32 \
  actor_rollout_ref.actor.use_invalid_action_penalty=True actor_rollout_ref.actor.invalid_action_penalty_coef=0.1 \
  actor_rollout_ref.rollout.name="$ROLLOUT" actor_rollout_ref.rollout.tensor_model_parallel_size=1 \
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6 actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32 \
  actor_rollout_ref.rollout.val_kwargs.do_sample=True actor_rollout_ref.rollout.val_kwargs.temperature=0.4 \
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32 \
  data.max_response_length=512 env.rollout.n=8 env.seed=0 \
  "${ENV_ARGS[@]}" "${SKILL_ARGS[@]}" \
  trainer.device="$DEVICE" trainer.n_gpus_per_node="$N_GPUS" trainer.nnodes=1 \
  trainer.total_training_steps=180 trainer.test_freq=10 trainer.save_freq=10 \
  trainer.val_before_train=True trainer.test_after_train=True \
  trainer.logger=[console,file,tensorboard] trainer.project_name=skillzero trainer.experiment_name="$EXPERIMENT" \
  "$@"
