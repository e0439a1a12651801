#!/usr/bin/env bash
# Shared launcher behind scripts/train_*.sh, with the hyperparameters of the reference SKILL0 scripts:
#   [VISUAL=1] bash scripts/launch.sh <alfworld|search> <skillzero|grpo|static> <model path or hub id> [hydra overrides...]
#
# All runs: GRPO, group 8, lr 1e-6, no KL, response 512, gpu_memory_utilization 0.5, validation with
# sampling at temperature 0.4, validation before training, test and save every 10 steps, 4 GPUs.
#
# row                            history, max_steps  prompt  mini, micro, log-prob micro  val batch  penalty  steps
# alfworld text (grpo, static)   50, 50              5120    256, 8, 32                   128        0.1      150
# alfworld visual (skillzero)    50, 50              3072    256, 8, 32                   128        0.1      180
# search text (grpo, static)     4, 4                14000   256, 8, 32                   512        0.01     150
# search visual (skillzero)      4, 4                4096    512, 16, 64                  512        0.01     180
# Also: ALFWorld visual max_model_len 4096; Search text GRPO/static test_freq 150; Search visual
# ray_init.num_cpus 8.
#
# ALFWorld trains on 16 tasks per step, Search on 128; SkillZero schedules [6,3,0] and [5,3,0].
# VISUAL=1 (the train_*_skillzero_* and train_*_agentocr_* scripts) renders the history as an image for
# Qwen2.5-VL (AgentOCR mode, docs/visual.md), as the reference SkillZero runs do, which is why their
# prompts are short. Two runs have no reference script and borrow rows: the AgentOCR baseline (visual,
# no skills) takes the visual row, so it pairs with visual SkillZero; SkillZero with a text history
# (train_*_skillzero_text_*) takes the text row's prompt length and batch sizes (a text history needs
# them) with SkillZero's 180 steps and validation every 10 steps (the curriculum measures skills there).
# The reference has no static Search script; ours uses the text GRPO row. The final test
# (trainer.test_after_train) runs for every method; the reference turns it on for Search SkillZero only.
#
# Environment variables: N_GPUS (4), DATA_DIR (~/data), DEVICE (cuda), SEARCH_URL,
# VISUAL (0; 1 = the visual runs, needs a Qwen2.5-VL model), ROLLOUT (vllm for text runs with DEVICE=cuda,
# hf otherwise: images reach the policy through the hf engine only; vllm runs from .venv-vllm when present,
# made by `bash scripts/install.sh --vllm`, docs/rollout.md).
# DRY_RUN=1 prints the training command (shell-quoted) instead of preparing data and running it.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ENV_NAME=${1:?env: alfworld or search}
METHOD=${2:?method: skillzero, grpo or static}
MODEL=${3:?model: a local Hugging Face folder or a hub id}
shift 3
DEVICE=${DEVICE:-cuda}
VISUAL=${VISUAL:-0}
if [ "$DEVICE" = cuda ] && [ "$VISUAL" != 1 ]; then ROLLOUT=${ROLLOUT:-vllm}; else ROLLOUT=${ROLLOUT:-hf}; fi
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

prepare() {  # write task slots (skipped by DRY_RUN)
  [ -n "${DRY_RUN:-}" ] || "$@" >/dev/null
}

case "$ENV_NAME" in
  alfworld)
    prepare python examples/data_preprocess/prepare.py --mode text --env alfworld --train_data_size 16 \
      --val_data_size 128 --local_dir "$DATA_DIR/verl-agent"
    ENV_ARGS=(env.env_name=alfworld/AlfredTWEnv env.max_steps=50 env.history_length=50
      data.train_files="$DATA_DIR/verl-agent/text/train.parquet" data.val_files="$DATA_DIR/verl-agent/text/test.parquet"
      data.train_batch_size=16 data.val_batch_size=128 actor_rollout_ref.actor.invalid_action_penalty_coef=0.1)
    SCHEDULE="[6,3,0]" ;;
  search)
    [ -f "$DATA_DIR/searchR1_processed_direct/train.parquet" ] || prepare python \
      examples/data_preprocess/preprocess_search_r1_dataset.py --local_dir "$DATA_DIR/searchR1_processed_direct"
    ENV_ARGS=(env.env_name=search env.max_steps=4 env.history_length=4
      env.search.search_url="${SEARCH_URL:-http://127.0.0.1:8000/retrieve}" env.search.topk=3
      data.train_files="$DATA_DIR/searchR1_processed_direct/train.parquet"
      data.val_files="$DATA_DIR/searchR1_processed_direct/test.parquet"
      data.train_batch_size=128 data.val_batch_size=512 actor_rollout_ref.actor.invalid_action_penalty_coef=0.01)
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

# ---- visual context (AgentOCR mode, docs/visual.md): VISUAL=1 gives the reference's visual runs ----
# History rendered as an image (ALFWorld: 32 render workers, font 10, width 392; Search: 64, font 12,
# width 560), agent-chosen compression rewarded with 0.01 x ln(c) every 8 steps. Needs a Qwen2.5-VL model.
VISUAL_ARGS=()
CONTEXT=text
if [ "$VISUAL" = 1 ]; then
  case "$ENV_NAME" in
    alfworld) OCR=(ocr.max_workers=32 ocr.font_size=10 ocr.max_width=392) ;;
    search)   OCR=(ocr.max_workers=64 ocr.font_size=12 ocr.max_width=560) ;;
  esac
  VISUAL_ARGS=(ocr.use_ocr=True ocr.use_parallel=True "${OCR[@]}" ocr.agent_select_compression.enable=True
    ocr.agent_select_compression.compression_reward_coef=0.01
    ocr.agent_select_compression.compression_reward_every_n_steps=8)
  CONTEXT=visual
  EXPERIMENT="${EXPERIMENT}_visual"
fi
# ---- end of the visual block ----

# Per (env, context, method): prompt length, batch sizes (mini, micro, log-prob micro), steps, test_freq, extras.
case "$ENV_NAME/$CONTEXT/$METHOD" in
  alfworld/visual/*)         PROMPT=3072;  BATCH=(256 8 32);  STEPS=180; TEST_FREQ=10
                             EXTRA=(actor_rollout_ref.rollout.max_model_len=4096) ;;
  alfworld/text/skillzero)   PROMPT=5120;  BATCH=(256 8 32);  STEPS=180; TEST_FREQ=10;  EXTRA=() ;;
  alfworld/text/*)           PROMPT=5120;  BATCH=(256 8 32);  STEPS=150; TEST_FREQ=10;  EXTRA=() ;;
  search/visual/*)           PROMPT=4096;  BATCH=(512 16 64); STEPS=180; TEST_FREQ=10;  EXTRA=(ray_init.num_cpus=8) ;;
  search/text/skillzero)     PROMPT=14000; BATCH=(256 8 32);  STEPS=180; TEST_FREQ=10;  EXTRA=() ;;
  search/text/*)             PROMPT=14000; BATCH=(256 8 32);  STEPS=150; TEST_FREQ=150; EXTRA=() ;;
esac

CMD=(python -m verl.trainer.main_ppo
  algorithm.adv_estimator=grpo algorithm.use_kl_in_reward=False
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.optim.lr=1e-6 actor_rollout_ref.actor.use_kl_loss=False
  actor_rollout_ref.actor.ppo_mini_batch_size="${BATCH[0]}"
  actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu="${BATCH[1]}"
  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu="${BATCH[2]}"
  actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu="${BATCH[2]}"
  actor_rollout_ref.actor.use_invalid_action_penalty=True
  actor_rollout_ref.rollout.name="$ROLLOUT" actor_rollout_ref.rollout.tensor_model_parallel_size=1
  actor_rollout_ref.rollout.gpu_memory_utilization=0.5
  actor_rollout_ref.rollout.val_kwargs.do_sample=True actor_rollout_ref.rollout.val_kwargs.temperature=0.4
  data.max_prompt_length="$PROMPT" data.max_response_length=512 env.rollout.n=8 env.seed=0
  "${ENV_ARGS[@]}" "${SKILL_ARGS[@]}" "${VISUAL_ARGS[@]}"
  trainer.device="$DEVICE" trainer.n_gpus_per_node="$N_GPUS" trainer.nnodes=1
  trainer.total_training_steps="$STEPS" trainer.test_freq="$TEST_FREQ" trainer.save_freq=10
  trainer.val_before_train=True trainer.test_after_train=True
  trainer.logger=[console,file,tensorboard] trainer.project_name=skillzero trainer.experiment_name="$EXPERIMENT"
  "${EXTRA[@]}" "$@")

if [ -n "${DRY_RUN:-}" ]; then
  printf '%q ' "${CMD[@]}"
  printf '\n'
else
  exec "${CMD[@]}"
fi
