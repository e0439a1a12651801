#!/usr/bin/env bash
# AgentOCR baseline (history as an image with agent-chosen compression, no skills) on alfworld with Qwen2.5-VL-3B-Instruct;
# reference hyperparameters in scripts/launch.sh.
# MODEL_PATH overrides the model (a local folder or a hub id); extra arguments are Hydra overrides.
VISUAL=1 exec bash "$(dirname "$0")/launch.sh" alfworld grpo "${MODEL_PATH:-Qwen/Qwen2.5-VL-3B-Instruct}" "$@"
