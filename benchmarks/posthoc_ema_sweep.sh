#!/usr/bin/env bash
# Post-hoc EMA widths of a finished run, judged by what users see: for each σ_rel, rebuild the EMA on a copy of the
# run (`scorekit ema --replace-ema`; the run itself is untouched), sample at a budget and score the samples.
#   bash benchmarks/posthoc_ema_sweep.sh RUN DATA [NFE] [σ_rel …]
#   e.g. bash benchmarks/posthoc_ema_sweep.sh /work/runs/fashion_cpu fashion-mnist 10 0.05 0.15 0.25
# Prints one line per width (FID, precision, recall of 1000 samples, seed 1); 1 torch thread.
set -euo pipefail
RUN=$1; DATA=$2; NFE=${3:-10}; shift $(( $# < 3 ? $# : 3 ))
WIDTHS=${*:-0.05 0.10 0.15 0.25}
SK=${SCOREKIT:-$(dirname "$0")/../.venv/bin/scorekit}
export OMP_NUM_THREADS=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=benchmarks/ema_score.sh
. "$(dirname "$0")"/ema_score.sh
for S in $WIDTHS; do
  ema_score "$RUN" "$DATA" "$NFE" "$S" "" "sigma_rel $S"
done
