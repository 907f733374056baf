#!/usr/bin/env bash
# Sample quality as training goes on, from one finished run: for each step, rebuild the run's EMA as of that step
# from its EMA snapshots (`scorekit ema --step S --replace-ema` on a copy; the run itself is untouched), sample at a
# budget and score the samples. Shows whether a run was still improving (so more training would pay) or had levelled.
#   bash benchmarks/quality_over_training.sh RUN DATA NFE STEP [STEP …]
#   e.g. EVAL_ARGS="--ref-split test --extractor fashion" \
#        bash benchmarks/quality_over_training.sh /work/runs/fashion_cpu fashion-mnist 10 800 1600 3200 6400
# Prints one line per step (FID, precision, recall of 1000 samples, seed 1; σ_rel of the run's EMA); 1 torch thread.
set -euo pipefail
RUN=$1; DATA=$2; NFE=$3; shift 3
SK=${SCOREKIT:-$(dirname "$0")/../.venv/bin/scorekit}
SIGMA_REL=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['training']['ema_sigma_rel'])" "$RUN"/config.json)
export OMP_NUM_THREADS=1
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# shellcheck source=benchmarks/ema_score.sh
. "$(dirname "$0")"/ema_score.sh
for S in "$@"; do
  ema_score "$RUN" "$DATA" "$NFE" "$SIGMA_REL" "$S" "step $S"
done
