#!/usr/bin/env bash
# Run the test suite (CPU; GPU-only tests skip themselves). Extra arguments go to pytest.
#   bash scripts/run_tests.sh --vllm   runs the vLLM engine's suite (tests/vllm) in .venv-vllm
#                                      (built by: bash scripts/install.sh --vllm)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if [ "${1:-}" = "--vllm" ]; then
  shift
  if [ ! -x "$ROOT/.venv-vllm/bin/python" ]; then
    echo "no .venv-vllm here: run  bash scripts/install.sh --vllm  first" >&2
    exit 2
  fi
  # shellcheck disable=SC1091
  . "$ROOT/.venv-vllm/bin/activate"
  exec python -m pytest -q tests/vllm "$@"
fi
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  # shellcheck disable=SC1091
  . "$ROOT/.venv/bin/activate"
fi
exec python -m pytest -q tests "$@"
