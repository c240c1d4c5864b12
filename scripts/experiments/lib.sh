# Shared by the experiment scripts (source it): one training run, skipped when finished, resumed when cut.
# run_experiment OUT CONFIG [--set k=v ...]: trains configs/CONFIG.yaml into OUT, log in OUT.log.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# One thread per run: on this 2-core machine other work shares the CPU, and oversubscribed BLAS
# threads cost far more than they bring. Override with OMP_NUM_THREADS=2 on an idle machine.

run_experiment() { run_cli train "$@"; }

# run_pretrain OUT CONFIG [--set k=v ...]: SimMIM-pretrains an encoder into OUT/encoder.safetensors, the same way.
run_pretrain() { run_cli pretrain "$@"; }

# run_cli SUBCOMMAND OUT CONFIG [--set k=v ...]: `sasformer SUBCOMMAND -c configs/CONFIG.yaml` into OUT, log in
# OUT.log; skipped when OUT's metrics.jsonl records a completed end (a run stopped early is not done), resumed
# from OUT/checkpoint.pt when cut.
run_cli() {
  local cmd="$1" out="$2" config="$3"
  shift 3
  if grep -qs '"event": "end", "status": "completed"' "$out/metrics.jsonl"; then echo "skip $out (done)"; return 0; fi
  local resume=()
  [ -f "$out/checkpoint.pt" ] && resume=(--resume)
  mkdir -p "$(dirname "$out")"
  echo "== $(date -u +%FT%TZ) $cmd $config $* -> $out"
  .venv/bin/sasformer "$cmd" -c "configs/$config.yaml" "$@" --out-dir "$out" "${resume[@]}" > "$out.log" 2>&1 \
    || { echo "FAILED: see $out.log"; return 1; }
  tail -n 1 "$out.log"
}

# eval_bundle BUNDLE OUTDIR [sasformer eval options...]: writes OUTDIR/report.json, skipped when it exists.
eval_bundle() {
  local bundle="$1" out="$2"
  shift 2
  if [ -f "$out/report.json" ]; then return 0; fi
  .venv/bin/sasformer eval -m "$bundle" "$@" -o "$out" > "$out.log" 2>&1 \
    || { echo "EVAL FAILED: see $out.log"; return 1; }
  rm -rf "$out/predictions"   # the report is what the summaries read; the PNGs are megabytes per run
}

# grid_args DEFAULT_FOLDS [-s SEEDS] [-f FOLDS] ARM...: the cross-validation grids' command line. Sets SEEDS, FOLDS_RUN
# and ARMS; exits 2 with the usage when no arm is given or one is not a key of the caller's associative array `arms`
# (checked before any run, so a typo does not surface hours into a queue).
grid_args() {
  SEEDS="0"; FOLDS_RUN="$1"; shift
  while [ $# -gt 0 ]; do
    case "$1" in
      -s) SEEDS="$2"; shift 2 ;;
      -f) FOLDS_RUN="$2"; shift 2 ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || { echo "usage: $0 [-s SEEDS] [-f FOLDS] ARM...; arms: ${!arms[*]}" >&2; exit 2; }
  local arm
  for arm in "$@"; do
    [ -n "${arms[$arm]:-}" ] || { echo "unknown arm '$arm'; arms: ${!arms[*]}" >&2; exit 2; }
  done
  ARMS=("$@")
}
