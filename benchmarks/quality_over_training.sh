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
for S in "$@"; do
  D=$WORK/step_$S; mkdir -p "$D"
  cp "$RUN"/config.json "$RUN"/model.safetensors "$RUN"/ema.safetensors "$RUN"/log.jsonl "$D"/
  cp -r "$RUN"/ema_snapshots "$D"/
  "$SK" ema --run "$D" --sigma-rel "$SIGMA_REL" --step "$S" --replace-ema > /dev/null
  "$SK" sample --run "$D" --nfe "$NFE" --no-tune --num 1000 --seed 1 --out "$D"/s.npz --no-progress > /dev/null
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
  "$SK" evaluate --samples "$D"/s.npz --data "$DATA" --out "$D"/e.json --metrics fid,pr ${EVAL_ARGS:-} > /dev/null
  python3 -c "import json,sys; d=json.load(open(sys.argv[2])); print(f'step {sys.argv[1]}: FID {d[\"fid\"]:.2f}  precision {d[\"precision\"]:.3f}  recall {d[\"recall\"]:.3f}')" "$S" "$D"/e.json
done
