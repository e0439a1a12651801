#!/usr/bin/env bash
# Build ./.venv-bench, the separate environment that runs the TRL baseline of benchmarks/compare.py
# (TRL is not a SkillZero dependency). Idempotent: a second run only checks. No torchvision, no CUDA torch.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${BENCH_VENV:-$ROOT/.venv-bench}
[ -x "$VENV/bin/python" ] || "${PYTHON_BIN:-python3.11}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -r "$ROOT/benchmarks/requirements.txt"
if "$VENV/bin/python" -c "import torchvision" 2>/dev/null; then
  echo "error: torchvision got into $VENV; remove it (pip uninstall torchvision)" >&2
  exit 1
fi
"$VENV/bin/python" -c "import torch, trl; print(f'{trl.__name__} {trl.__version__}, torch {torch.__version__} in $VENV')"
