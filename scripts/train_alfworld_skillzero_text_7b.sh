#!/usr/bin/env bash
# SKILL0 with a text history (dynamic skill curriculum) on alfworld with Qwen2.5-7B-Instruct;
# reference hyperparameters in scripts/launch.sh.
# MODEL_PATH overrides the model (a local folder or a hub id); extra arguments are Hydra overrides.
exec bash "$(dirname "$0")/launch.sh" alfworld skillzero "${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct}" "$@"
