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
for S in $WIDTHS; do
  D=$WORK/sigma_rel_$S; mkdir -p "$D"
  cp "$RUN"/config.json "$RUN"/model.safetensors "$RUN"/ema.safetensors "$RUN"/log.jsonl "$D"/
  cp -r "$RUN"/ema_snapshots "$D"/
  "$SK" ema --run "$D" --sigma-rel "$S" --replace-ema > /dev/null
  "$SK" sample --run "$D" --nfe "$NFE" --no-tune --num 1000 --seed 1 --out "$D"/s.npz --no-progress > /dev/null
  "$SK" evaluate --samples "$D"/s.npz --data "$DATA" --out "$D"/e.json --metrics fid,pr > /dev/null
  python3 -c "import json,sys; d=json.load(open(sys.argv[2])); print(f'sigma_rel {sys.argv[1]}: FID {d[\"fid\"]:.2f}  precision {d[\"precision\"]:.3f}  recall {d[\"recall\"]:.3f}')" "$S" "$D"/e.json
done
