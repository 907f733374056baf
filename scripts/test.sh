#!/usr/bin/env bash
# Lint, format check and the whole test suite (CPU, a few minutes on 2 cores). Run scripts/setup.sh --dev first.
set -euo pipefail
cd "$(dirname "$0")/.."
# Single-threaded BLAS/OpenMP: on 2 shared cores oversubscription makes torch and numpy many times slower.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python -m pytest "$@"
