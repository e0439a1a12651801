#!/usr/bin/env bash
# SKILL0 as published (history as an image with agent-chosen compression + skill curriculum) on search with Qwen2.5-VL-7B-Instruct;
# reference hyperparameters in scripts/launch.sh.
# MODEL_PATH overrides the model (a local folder or a hub id); extra arguments are Hydra overrides.
VISUAL=1 exec bash "$(dirname "$0")/launch.sh" search skillzero "${MODEL_PATH:-Qwen/Qwen2.5-VL-7B-Instruct}" "$@"
