#!/usr/bin/env bash
# Experiment 1 of docs/RESULTS.md: MSCMR real scribbles, pCE only vs SASFormer, 3 seeds each,
# same model, schedule, data order and seeds across arms. Runs one after the other (2 CPU cores).
# Usage: scripts/experiments/mscmr.sh [seeds...]   (default: 0 1 2); logs in runs/<arm>_s<seed>/
set -euo pipefail
# One thread per run: on this 2-core machine other work shares the CPU, and oversubscribed BLAS
# threads cost far more than they bring. Override with OMP_NUM_THREADS=2 on an idle machine.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
cd "$(dirname "$0")/../.."
seeds=("${@:-0 1 2}")
for seed in ${seeds[@]}; do
  for arm in pce sasformer; do
    out="runs/mscmr_${arm}_s${seed}"
    if [ -f "$out/last/bundle.json" ]; then echo "skip $out (done)"; continue; fi
    resume=""
    [ -f "$out/checkpoint.pt" ] && resume="--resume"
    echo "== $(date -u +%FT%TZ) $arm seed $seed -> $out"
    .venv/bin/sasformer train -c "configs/mscmr_${arm}.yaml" --set seed="$seed" --out-dir "$out" $resume \
      > "$out.log" 2>&1 || { echo "FAILED: see $out.log"; exit 1; }
    tail -n 1 "$out.log"
  done
done
