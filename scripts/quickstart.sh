#!/usr/bin/env bash
# The main job: a short SKILL0 training run on CPU.
#   ALFWorld games (bundled data), the embedded SmolLM2-135M-Instruct, GRPO with groups of 2, and the
#   dynamic skill curriculum: skills start in the prompt and are withdrawn (budget 2 -> 0) while the
#   policy trains; every validation plays the same games with and without skills.
# Writes checkpoints/quickstart/{metrics.jsonl,global_step_N/,rollouts/}. Extra arguments are Hydra
# overrides, e.g.  bash scripts/quickstart.sh trainer.total_training_steps=2
# Run it again to resume from the last checkpoint.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  # shellcheck disable=SC1091
  . "$ROOT/.venv/bin/activate"
fi
cd "$ROOT"
SLOTS=${SKILLZERO_CACHE:-$HOME/.cache/skillzero}/quickstart_slots
ALFWORLD_ROOT=$(python -c "from agent_system.environments.env_package.alfworld.games import unpack_shared_data as u; print(u())")
python examples/data_preprocess/prepare.py --mode text --env alfworld --train_data_size 64 --val_data_size 2 \
  --local_dir "$SLOTS" >/dev/null

python -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo \
  env.env_name=alfworld/AlfredTWEnv env.alfworld.data_path="$ALFWORLD_ROOT" \
  env.rollout.n=2 env.max_steps=4 env.history_length=1 \
  env.curriculum_learning.enable=True \
  env.curriculum_learning.skill_mapping_file=skills/alfworld/skill_mapping.json \
  env.curriculum_learning.max_set_schedule=[2,0] \
  data.train_files="$SLOTS/text/train.parquet" data.val_files="$SLOTS/text/test.parquet" \
  data.train_batch_size=2 data.val_batch_size=2 data.max_prompt_length=2048 data.max_response_length=64 \
  actor_rollout_ref.model.path=smollm2-135m-instruct \
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.ppo_mini_batch_size=2 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \
  trainer.device=cpu trainer.n_gpus_per_node=1 \
  trainer.total_training_steps=4 trainer.test_freq=1 trainer.save_freq=2 trainer.val_before_train=True \
  trainer.project_name=quickstart trainer.experiment_name=alfworld_skill0 \
  trainer.default_local_dir=checkpoints/quickstart trainer.logger=[console,file] trainer.log_prompts=True \
  "$@"
