#!/usr/bin/env bash
# The main job: a short SKILL0 training run on CPU with the embedded SmolLM2-135M-Instruct.
#   bash scripts/quickstart.sh [alfworld|machines|search] [hydra overrides ...]
#
# alfworld (default, ~4-6 minutes on 2 cores): ALFWorld games (bundled data), groups of 2, budget 2 -> 0.
#   Too hard for a 135M model: success stays 0, so it shows the machinery, not learning.
# machines: the skill-dependent machines environment (verl/trainer/config/machines_laptop.yaml). Each
#   machine starts only with its own button order, which only its skill file states; skills start in the
#   prompt and the curriculum withdraws them (budget 5 -> 3 -> 0) while GRPO trains, 12 steps
#   (docs/internalization.md).
# search: Search-QA over the bundled corpus with an in-process BM25 index, budget 5 -> 0.
#
# Every validation plays the same tasks with and without skills. Writes checkpoints/quickstart/<env>/
# {metrics.jsonl,global_step_N/,rollouts/,report/} and ends with a summary; run it again to resume from
# the last checkpoint (e.g. with trainer.total_training_steps=N to train further).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  # shellcheck disable=SC1091
  . "$ROOT/.venv/bin/activate"
fi
cd "$ROOT"
ENV=alfworld
case "${1:-}" in
  alfworld|machines|search) ENV=$1; shift ;;
  *=*|"") ;;
  *) echo "usage: bash scripts/quickstart.sh [alfworld|machines|search] [hydra overrides ...]" >&2; exit 2 ;;
esac
CACHE=${SKILLZERO_CACHE:-$HOME/.cache/skillzero}
OUT=checkpoints/quickstart/$ENV
for arg in "$@"; do
  case "$arg" in trainer.default_local_dir=*) OUT=${arg#*=} ;; esac
done

# The curriculum's phases must divide the number of validations (steps // test_freq): unless the
# schedule is given, pick one for the requested run that ends at budget 0 (first budget $1).
schedule() {
  local steps=$1 freq=$2 first=$3 arg
  for arg in "${@:4}"; do
    case "$arg" in
      trainer.total_training_steps=*) steps=${arg#*=} ;;
      trainer.test_freq=*) freq=${arg#*=} ;;
      env.curriculum_learning.max_set_schedule=*) echo "${arg#*=}"; return ;;
    esac
  done
  local v=$((steps / freq))
  if [ "$v" -le 1 ]; then echo "[0]"
  elif [ $((v % 2)) -eq 0 ]; then echo "[$first,0]"
  elif [ $((v % 3)) -eq 0 ]; then echo "[$first,1,0]"
  else echo "[$(printf "$first,%.0s" $(seq 2 "$v"))0]"
  fi
}

# ALFWorld and Search: 2 steps, groups of 2, a paired validation before and after each step.
TWO_STEPS=(algorithm.adv_estimator=grpo env.rollout.n=2 env.curriculum_learning.enable=True
  data.train_batch_size=2 data.max_response_length=48 actor_rollout_ref.model.path=smollm2-135m-instruct
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.ppo_mini_batch_size=2
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2 trainer.device=cpu trainer.n_gpus_per_node=1
  trainer.total_training_steps=2 trainer.test_freq=1 trainer.save_freq=1 trainer.val_before_train=True
  trainer.project_name=quickstart trainer.logger=[console,file] trainer.log_prompts=True)

case "$ENV" in
  machines)
    SLOTS=$CACHE/quickstart_slots/machines
    python -m agent_system.environments.env_package.machines.tasks --local_dir "$SLOTS" >/dev/null
    python -m verl.trainer.main_ppo --config-name machines_laptop \
      data.train_files="$SLOTS/train.parquet" data.val_files="$SLOTS/val.parquet" \
      data.test_files="$SLOTS/test.parquet" trainer.save_freq=4 \
      trainer.project_name=quickstart trainer.experiment_name=machines_skill0 \
      trainer.default_local_dir="$OUT" trainer.log_prompts=True "$@"
    ;;
  alfworld)
    SLOTS=$CACHE/quickstart_slots
    ALFWORLD_ROOT=$(python -c "from agent_system.environments.env_package.alfworld.games import unpack_shared_data as u; print(u())")
    python examples/data_preprocess/prepare.py --mode text --env alfworld --train_data_size 64 --val_data_size 2 \
      --local_dir "$SLOTS" >/dev/null
    python -m verl.trainer.main_ppo "${TWO_STEPS[@]}" \
      env.env_name=alfworld/AlfredTWEnv env.alfworld.data_path="$ALFWORLD_ROOT" env.max_steps=3 env.history_length=1 \
      env.curriculum_learning.skill_mapping_file=skills/alfworld/skill_mapping.json \
      env.curriculum_learning.max_set_schedule="$(schedule 2 1 2 "$@")" \
      data.train_files="$SLOTS/text/train.parquet" data.val_files="$SLOTS/text/test.parquet" \
      data.val_batch_size=2 data.max_prompt_length=2048 \
      trainer.experiment_name=alfworld_skill0 trainer.default_local_dir="$OUT" "$@"
    ;;
  search)
    SLOTS=$CACHE/quickstart_slots/search
    INDEX=$CACHE/quickstart_search_bm25
    if [ ! -f "$INDEX/index_meta.json" ]; then
      python examples/search/retriever/index_builder.py --retrieval_method bm25 \
        --corpus_path "$(python -c "from verl.utils.fs import shared_data_dir as d; print(d() / 'search/corpus.jsonl')")" \
        --save_dir "$INDEX" >/dev/null
    fi
    python examples/data_preprocess/preprocess_search_r1_dataset.py --local_dir "$SLOTS" >/dev/null
    python -m verl.trainer.main_ppo "${TWO_STEPS[@]}" \
      env.env_name=search env.search.search_url="local:$INDEX" env.max_steps=2 env.history_length=2 \
      env.curriculum_learning.skill_mapping_file=skills/search/skill_mapping.json \
      env.curriculum_learning.max_set_schedule="$(schedule 2 1 5 "$@")" \
      data.train_files="$SLOTS/train.parquet" data.val_files="$SLOTS/test.parquet" \
      data.val_batch_size=4 data.max_prompt_length=1024 \
      trainer.experiment_name=search_skill0 trainer.default_local_dir="$OUT" "$@"
    ;;
esac

python -m agent_system.skills.report "$OUT/metrics.jsonl" --out "$OUT/report" >/dev/null
echo
echo "== SKILL0 quickstart ($ENV): validation success, with skills (val/success_rate) and without =="
awk '/^## /{show=($0 == "## Validation success")} show && /^- /' "$OUT/report/summary.md"
echo "Report (plots, per-category table, curriculum decisions): $OUT/report/summary.md"
