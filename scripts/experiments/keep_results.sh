#!/usr/bin/env bash
# Copy the small result files of experiment runs (final bundle.json with its validation report, and every
# eval report.json) from runs/ (git-ignored, weights included, lost with the machine) to results/<dir>/,
# which is committed: the cross-validation grid grows over several sessions, and summarize.py reads it:
#   .venv/bin/python scripts/experiments/summarize.py mscmrcv --cv --runs results/cv
# Usage: scripts/experiments/keep_results.sh [PREFIX] [DIR]   (default: mscmrcv cv)
set -euo pipefail
cd "$(dirname "$0")/../.."
prefix="${1:-mscmrcv}"
dest="results/${2:-cv}"
for run in runs/"${prefix}"_*; do
  [ -f "$run/last/bundle.json" ] || continue
  name="$(basename "$run")"
  mkdir -p "$dest/$name/last"
  cp "$run/last/bundle.json" "$dest/$name/last/bundle.json"
  for rep in "$run"/eval/*/report.json; do
    [ -f "$rep" ] || continue
    sub="$(basename "$(dirname "$rep")")"
    mkdir -p "$dest/$name/eval/$sub"
    cp "$rep" "$dest/$name/eval/$sub/report.json"
  done
done
echo "kept: $(find "$dest" -name '*.json' | wc -l) files under $dest"
