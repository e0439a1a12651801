#!/usr/bin/env bash
# static-skill baseline (all skills in every prompt) on search with Qwen2.5-7B-Instruct; reference hyperparameters in scripts/launch.sh.
# MODEL_PATH overrides the model (a local folder or a hub id); extra arguments are Hydra overrides.
exec bash "$(dirname "$0")/launch.sh" search static "${MODEL_PATH:-Qwen/Qwen2.5-7B-Instruct}" "$@"
