#!/usr/bin/env bash
# The main job: a short SKILL0 training run on CPU (about 10 minutes on 2 cores).
#   ALFWorld games (bundled data), the embedded SmolLM2-135M-Instruct, GRPO with groups of 2, and the
#   dynamic skill curriculum: skills start in the prompt and are withdrawn (budget 2 -> 0) while the
#   policy trains; every validation plays the same games with and without skills.
# Writes checkpoints/quickstart/{metrics.jsonl,global_step_N/,rollouts/}. Extra arguments are Hydra
# overrides, e.g.  bash scripts/quickstart.sh trainer.total_training_steps=3
# Run it again to resume from the last checkpoint.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  # shellcheck disable=SC1091
  . "$ROOT/.venv/bin/activate"
fi
cd "$ROOT"
SLOTS=${SKILLZERO_CACHE:-$HOME/.cache/skillzero}/quickstart_slots

# The curriculum's phases must divide the number of validations (steps // test_freq): unless the
# schedule is given, pick one for the requested run that ends at budget 0.
STEPS=2 FREQ=1 SCHEDULE=
for arg in "$@"; do
  case "$arg" in
    trainer.total_training_steps=*) STEPS=${arg#*=} ;;
    trainer.test_freq=*) FREQ=${arg#*=} ;;
    env.curriculum_learning.max_set_schedule=*) SCHEDULE=${arg#*=} ;;
  esac
done
if [ -z "$SCHEDULE" ]; then
  V=$((STEPS / FREQ))
  if [ "$V" -le 1 ]; then SCHEDULE="[0]"
  elif [ $((V % 2)) -eq 0 ]; then SCHEDULE="[2,0]"
  elif [ $((V % 3)) -eq 0 ]; then SCHEDULE="[2,1,0]"
  else SCHEDULE="[$(printf '2,%.0s' $(seq 2 "$V"))0]"
  fi
fi
ALFWORLD_ROOT=$(python -c "from agent_system.environments.env_package.alfworld.games import unpack_shared_data as u; print(u())")
python examples/data_preprocess/prepare.py --mode text --env alfworld --train_data_size 64 --val_data_size 2 \
  --local_dir "$SLOTS" >/dev/null

python -m verl.trainer.main_ppo \
  algorithm.adv_estimator=grpo \
  env.env_name=alfworld/AlfredTWEnv env.alfworld.data_path="$ALFWORLD_ROOT" \
  env.rollout.n=2 env.max_steps=3 env.history_length=1 \
  env.curriculum_learning.enable=True \
  env.curriculum_learning.skill_mapping_file=skills/alfworld/skill_mapping.json \
  env.curriculum_learning.max_set_schedule="$SCHEDULE" \
  data.train_files="$SLOTS/text/train.parquet" data.val_files="$SLOTS/text/test.parquet" \
  data.train_batch_size=2 data.val_batch_size=2 data.max_prompt_length=2048 data.max_response_length=48 \
  actor_rollout_ref.model.path=smollm2-135m-instruct \
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.ppo_mini_batch_size=2 \
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 \
  trainer.device=cpu trainer.n_gpus_per_node=1 \
  trainer.total_training_steps="$STEPS" trainer.test_freq="$FREQ" trainer.save_freq=1 trainer.val_before_train=True \
  trainer.project_name=quickstart trainer.experiment_name=alfworld_skill0 \
  trainer.default_local_dir=checkpoints/quickstart trainer.logger=[console,file] trainer.log_prompts=True \
  "$@"
