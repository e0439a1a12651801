#!/usr/bin/env bash
# Run the test suite (CPU; GPU-only tests skip themselves). Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "$ROOT/.venv/bin/python" ]; then
  # shellcheck disable=SC1091
  . "$ROOT/.venv/bin/activate"
fi
cd "$ROOT"
exec python -m pytest -q tests "$@"
