#!/usr/bin/env bash
# The cardiac-MRI seed model (issue 14, item 4): the setting that the selection protocol of docs/RESULTS.md §6
# keeps today (the stage-2 SASFormer default: under cross-validation it ties pCE on unseen subjects, and on val it
# is ahead), trained with the MSCMR recipe (configs/mscmr_sasformer.yaml: 2700 steps since that schedule passed the
# decision rule on 2026-12-08) on all 25 MSCMR training subjects at seed 0, scored on the 5 val subjects, and
# installed as a checkpoint a new project can start from.
# RUN is its own folder (the 900-step bundle lives on in runs/mscmrabl_stage2_s0): an existing one is reused, a cut
# one resumed. About 60 min on one core of this CPU beside one other run; 125 min beside two (2026-12-08).
#
# Usage: scripts/seed_model.sh [DEST_DIR]
#   DEST_DIR defaults to the server's pretrained_dir (SASFORMER_PRETRAINED_DIR, from the environment or .env).
# A project whose classes are background, RV, Myo, LV (in that order) can then name the file as `pretrained`
# (UI: "Seed model"; API: POST /projects {"pretrained": "mscmr-b0-stage2.safetensors"}), and its first masks are
# this model's (val: mean volume Dice in the report printed below).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/experiments/lib.sh
NAME=mscmr-b0-stage2.safetensors
DATA=mscmr:../shared/data/mscmr_scribble
RUN=runs/mscmr_seed_stage2_s0

dest="${1:-$(HF_HUB_OFFLINE=1 .venv/bin/python -c \
  'from core.settings import get_settings; print(get_settings().pretrained_dir or "")')}"
[ -n "$dest" ] || { echo "no destination: pass DEST_DIR or set SASFORMER_PRETRAINED_DIR" >&2; exit 2; }
[ -d "${DATA#mscmr:}" ] || { echo "MSCMR data not found at ${DATA#mscmr:} (see its README)" >&2; exit 2; }

run_experiment "$RUN" mscmr_sasformer --set seed=0 --set "loss.stages=[2]"
mkdir -p "$RUN/eval"
eval_bundle "$RUN/last" "$RUN/eval/val_plain" --data "$DATA" --split val --exclude-background --device cpu
mkdir -p "$dest"
tmp="$dest/.$NAME.tmp.$$"
cp "$RUN/last/model.safetensors" "$tmp" && mv -f "$tmp" "$dest/$NAME"   # atomic: a server never lists half a file
HF_HUB_OFFLINE=1 .venv/bin/python - "$dest/$NAME" "$RUN/eval/val_plain/report.json" <<'EOF'
import json, sys
from model.pretrained import describe
info = describe(sys.argv[1])  # the same check GET /pretrained makes
report = json.load(open(sys.argv[2]))
print(f"installed {sys.argv[1]} (layout {info.layout}, {info.num_classes} classes)")
per_class = report["volume_dice_per_class"]
print(f"val (5 subjects) mean volume Dice {report['mean_volume_dice']:.4f}: "
      + " / ".join(f"{c} {per_class[c]:.3f}" for c in ("RV", "Myo", "LV")))
EOF
