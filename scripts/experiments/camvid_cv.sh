#!/usr/bin/env bash
# CamVid under the selection protocol of docs/RESULTS.md (issue 14, section 2-3c): sequence-level 4-fold
# cross-validation over the 367 train frames (configs/folds/camvid_train_4fold.json: 0001TP, 0006R0 and the two
# contiguous halves of 0016E5), to choose CamVid's affinity stages without val. Each run trains on 3 folds with
# the recipe of experiment 2 (SIMULATED scribbles) and is scored on the held-out fold's dense masks and on val.
# Usage: scripts/experiments/camvid_cv.sh [-s "0 1 2"] [-f "0 1 2 3"] ARM [ARM...]   (arms: see below)
# Runs go to runs/camvidcv_<arm>_f<fold>_s<seed>/ (eval reports in its eval/ folder); finished runs and evals
# are skipped, cut ones resumed; reports are copied to results/camvid_cv/ (committed). Summary:
#   .venv/bin/python scripts/experiments/summarize.py camvidcv --cv --metric miou --runs results/camvid_cv \
#       --pair pce,stage2 --pair pce,four --pair stage2,four
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/experiments/lib.sh
FOLDS=configs/folds/camvid_train_4fold.json
DATA=camvid:../shared/data/camvid
# arm -> "config [key=value ...]": the scribble arms of experiment 2 with the affinity on no stage, stage 2 alone
# (the product default, chosen on MSCMR) or all four (the paper's, and configs/camvid_scribbles_sasformer.yaml).
declare -A arms=(
  [pce]="camvid_scribbles_pce"
  [stage2]="camvid_scribbles_sasformer loss.stages=[2]"
  [four]="camvid_scribbles_sasformer loss.stages=[1,2,3,4]"
)
grid_args "0 1 2 3" "$@"
for seed in $SEEDS; do
  for fold in $FOLDS_RUN; do
    for arm in "${ARMS[@]}"; do
      read -r config kvs <<< "${arms[$arm]}"
      sets=(--set "seed=$seed" --set "data.folds=$FOLDS" --set "data.fold=$fold")
      for kv in $kvs; do sets+=(--set "$kv"); done
      out="runs/camvidcv_${arm}_f${fold}_s${seed}"
      run_experiment "$out" "$config" "${sets[@]}"
      mkdir -p "$out/eval"
      eval_bundle "$out/last" "$out/eval/val_plain" --data "$DATA" --split val
      eval_bundle "$out/last" "$out/eval/heldout_plain" --data "$DATA" --split train --folds "$FOLDS" --fold "$fold"
      scripts/experiments/keep_results.sh camvidcv camvid_cv > /dev/null   # into results/camvid_cv/ (committed)
    done
  done
done
