#!/usr/bin/env bash
# The GPU check (benchmarks/device_check.py): one JSON object on stdout, at most 8 minutes.
#   bash benchmarks/device_check.sh --prepare       # here, with PyPI access: wheels -> benchmarks/.device_wheels/
#   bash benchmarks/device_check.sh --cpu-dry-run   # here: every step on CPU with small sizes
#   bash benchmarks/device_check.sh                 # on the single-GPU machine (no network): install the
#                                                    # wheels into a private folder, run the check
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WHEELS="$ROOT/benchmarks/.device_wheels"
cd "$ROOT"
case "${1:-}" in
  --prepare) exec python benchmarks/device_wheels.py "$WHEELS" ;;
  --cpu-dry-run) exec env PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" python -m benchmarks.device_check --cpu-dry-run ;;
  "") ;;
  *) echo "usage: $0 [--prepare | --cpu-dry-run]" >&2; exit 2 ;;
esac
DEPS=${SKILLZERO_DEVICE_DEPS:-/tmp/skillzero_device_deps}
if ! python -c "import ray, hydra, omegaconf" 2>/dev/null; then
  ls "$WHEELS"/*.whl >/dev/null 2>&1 || { echo "no wheels in $WHEELS: run '$0 --prepare' where PyPI is reachable" >&2; exit 2; }
  python -m pip install --quiet --no-index --no-deps --target "$DEPS" "$WHEELS"/*.whl >&2
  python benchmarks/device_wheels.py --prune "$DEPS"
  export PYTHONPATH="$DEPS${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT:${PYTHONPATH:-}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PARTIAL=$(mktemp)
if ! timeout 460 python -m benchmarks.device_check --partial "$PARTIAL"; then
  # cut short (8-minute budget) or crashed: the steps finished so far, still one JSON object
  python -c 'import json, sys; r = json.loads(open(sys.argv[1]).read() or "{}"); r["cut_short"] = True; print(json.dumps(r))' "$PARTIAL"
fi
