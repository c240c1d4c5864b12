#!/usr/bin/env bash
# Experiment 1 of docs/RESULTS.md: MSCMR real scribbles, pCE only vs SASFormer, 3 seeds each,
# same model, schedule, data order and seeds across arms. Runs one after the other (2 CPU cores).
# Usage: scripts/experiments/mscmr.sh [seeds...]   (default: 0 1 2); logs in runs/<arm>_s<seed>.log
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/experiments/lib.sh
seeds=("${@:-0 1 2}")
for seed in ${seeds[@]}; do
  for arm in pce sasformer; do
    run_experiment "runs/mscmr_${arm}_s${seed}" "mscmr_${arm}" --set seed="$seed" --set steps=900  # experiment 1 ran 900
  done
done
