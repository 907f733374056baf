#!/usr/bin/env bash
# Lint, format check and the whole test suite (CPU, a few minutes on 2 cores). Run scripts/setup.sh --dev first.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
