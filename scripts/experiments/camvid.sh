#!/usr/bin/env bash
# Experiments 2-3 of docs/RESULTS.md: CamVid with SIMULATED scribbles (pCE vs SASFormer vs full
# supervision) and SIMULATED points (pCE vs SASFormer). Same model, schedule, data order and seeds
# across arms (configs/camvid_*.yaml); mIoU over the 11 classes on val (void ignored).
# Usage: scripts/experiments/camvid.sh [-s "0 1 2"] [RUN...]   (default: all five runs, seed 0)
# RUN is one of: scribbles_pce scribbles_sasformer scribbles_full points_pce points_sasformer,
# scribbles_stage2 points_stage2
# Runs go to runs/camvid_<RUN>_s<seed>/ (log beside it); finished runs are skipped, cut ones resumed. Each
# finished run's report is copied to results/camvid/ (committed; runs/ is lost with the machine). Summary:
#   .venv/bin/python scripts/experiments/summarize.py camvid_scribbles --runs results/camvid --metric miou \
#       --pair pce,stage2 --ratio stage2,full          (and camvid_points)
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/experiments/lib.sh
# RUN -> "config [override ...]": the *_stage2 runs are the SASFormer arms with the affinity loss on
# stage 2 only (the MSCMR ablation's best row), to see whether that choice carries over to CamVid.
declare -A configs=(
  [scribbles_pce]=camvid_scribbles_pce [scribbles_sasformer]=camvid_scribbles_sasformer
  [scribbles_full]=camvid_full [points_pce]=camvid_points_pce [points_sasformer]=camvid_points_sasformer
  [scribbles_stage2]="camvid_scribbles_sasformer loss.stages=[2]"
  [points_stage2]="camvid_points_sasformer loss.stages=[2]"
)
seeds="0"
if [ "${1:-}" = "-s" ]; then seeds="$2"; shift 2; fi
runs=("$@")
[ ${#runs[@]} -gt 0 ] || runs=(scribbles_pce scribbles_sasformer points_pce points_sasformer scribbles_full)
for run in "${runs[@]}"; do
  [ -n "${configs[$run]:-}" ] || { echo "unknown run '$run'; runs: ${!configs[*]}" >&2; exit 2; }
done
for seed in $seeds; do
  for run in "${runs[@]}"; do
    read -r config overrides <<< "${configs[$run]}"
    sets=(--set "seed=$seed")
    for kv in $overrides; do sets+=(--set "$kv"); done
    run_experiment "runs/camvid_${run}_s${seed}" "$config" "${sets[@]}"
    scripts/experiments/keep_results.sh camvid camvid
  done
done
