#!/usr/bin/env bash
# Experiments 4-5 of docs/RESULTS.md: ablations and improvements of the affinity loss on MSCMR real
# scribbles. Every row is configs/mscmr_sasformer.yaml (experiment 1's SASFormer arm: same model,
# schedule, data order) with the overrides listed below, so a row differs from that arm in one thing.
# Usage: scripts/experiments/mscmr_ablations.sh [-s "0 1 2"] ROW [ROW...]   (rows: see `rows` below)
# Runs go to runs/mscmrabl_<row>_s<seed>/ (log beside it); finished runs are skipped, cut ones resumed.
# Summary: .venv/bin/python scripts/experiments/summarize.py mscmrabl --metric volume_dice
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/experiments/lib.sh
declare -A rows=(
  [stage1]="loss.stages=[1]"
  [stage2]="loss.stages=[2]"
  [stage3]="loss.stages=[3]"
  [stage4]="loss.stages=[4]"
  [stages12]="loss.stages=[1,2]"
  [stages123]="loss.stages=[1,2,3]"
  [stages34]="loss.stages=[3,4]"
  [stage2_alpha2]="loss.stages=[2] loss.alpha=2.4"
  [l2]="loss.distance=l2"
  [single]="loss.normalisation=single loss.alpha=0.3"
  [single_a06]="loss.normalisation=single loss.alpha=0.6"
  [single_exclself]="loss.normalisation=single loss.alpha=0.3 loss.exclude_self=true"
  [exclself]="loss.exclude_self=true"
  [ramp]="loss.alpha_warmup_steps=300"
  [alpha2]="loss.alpha=2.4"
)
seeds="0"
if [ "${1:-}" = "-s" ]; then seeds="$2"; shift 2; fi
[ $# -gt 0 ] || { echo "usage: $0 [-s \"SEEDS\"] ROW...; rows: ${!rows[*]}" >&2; exit 2; }
for row in "$@"; do
  [ -n "${rows[$row]:-}" ] || { echo "unknown row '$row'; rows: ${!rows[*]}" >&2; exit 2; }
done
for seed in $seeds; do
  for row in "$@"; do
    sets=(--set "seed=$seed" --set steps=900)  # the ablations ran at 900 steps
    for kv in ${rows[$row]}; do sets+=(--set "$kv"); done
    run_experiment "runs/mscmrabl_${row}_s${seed}" mscmr_sasformer "${sets[@]}"
  done
done
