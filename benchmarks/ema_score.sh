# Shared by posthoc_ema_sweep.sh and quality_over_training.sh (source it): rebuild a run's EMA on a copy of the run
# (the run itself is untouched), sample 1000 at a budget (seed 1, built-in rule) and score them.
#   ema_score RUN DATA NFE SIGMA_REL STEP LABEL   (STEP "" = the last step; EVAL_ARGS: extra `evaluate` flags)
# Prints "LABEL: FID …  precision …  recall …". Needs SK (the scorekit command) and WORK (a scratch folder).
ema_score() {
  local run=$1 data=$2 nfe=$3 sigma_rel=$4 step=$5 label=$6
  local d; d=$(mktemp -d "$WORK"/ema.XXXX)
  cp "$run"/config.json "$run"/model.safetensors "$run"/ema.safetensors "$run"/log.jsonl "$d"/
  cp -r "$run"/ema_snapshots "$d"/
  "$SK" ema --run "$d" --sigma-rel "$sigma_rel" ${step:+--step "$step"} --replace-ema > /dev/null
  "$SK" sample --run "$d" --nfe "$nfe" --no-tune --num 1000 --seed 1 --out "$d"/s.npz --no-progress > /dev/null
  # shellcheck disable=SC2086  # EVAL_ARGS is a list of flags
  "$SK" evaluate --samples "$d"/s.npz --data "$data" --out "$d"/e.json --metrics fid,pr ${EVAL_ARGS:-} > /dev/null
  python3 -c "import json,sys; d=json.load(open(sys.argv[2])); print(f'{sys.argv[1]}: FID {d[\"fid\"]:.2f}  precision {d[\"precision\"]:.3f}  recall {d[\"recall\"]:.3f}')" "$label" "$d"/e.json
}
