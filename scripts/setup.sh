#!/usr/bin/env bash
# Set up scorekit in ./.venv.  Usage: bash scripts/setup.sh [--dev] [--bench]
#   --dev    also the test tools (pytest, ruff, hypothesis)
#   --bench  also the peer libraries the benchmarks compare against (see benchmarks/README.md)
# torch: if the venv already has a torch (e.g. a CUDA build you installed), it is kept; otherwise the CPU
# wheel torch==2.13.0 is installed. The package itself asks only for torch>=2.1, so pip never replaces it.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=""
for a in "$@"; do
  case "$a" in
    --dev) extras="${extras:+$extras,}dev" ;;
    --bench) extras="${extras:+$extras,}bench" ;;
    *) echo "setup.sh: unknown option $a (use --dev, --bench)" >&2; exit 2 ;;
  esac
done
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
spec="."
[ -n "$extras" ] && spec=".[$extras]"
.venv/bin/python -m pip install -q -e "$spec"
.venv/bin/python -c "import torch, scorekit; print(f'scorekit {scorekit.__version__} with torch {torch.__version__} ready in .venv')"
