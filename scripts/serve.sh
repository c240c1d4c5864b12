#!/usr/bin/env bash
# Install (once) and start SASFormer Studio's API on 127.0.0.1:8000.
# Embedded default: SQLite and files under ./data (or $SASFORMER_HOME); no database or broker server needed.
# Host/port come from SASFORMER_HOST / SASFORMER_PORT (or .env); extra arguments go to `python -m backend`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False

# --- background workers --------------------------------------------------------------------------
# The worker issue starts the Celery worker here as a child process (and stops it in the trap below),
# e.g.:  .venv/bin/celery -A worker.celery_app worker --concurrency 1 & worker_pid=$!
# Until then fine-tune jobs are accepted and stay "queued".
children=()
cleanup() { for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

# --- API ---------------------------------------------------------------------------------------------
echo "[serve] SASFormer Studio API on http://${SASFORMER_HOST:-127.0.0.1}:${SASFORMER_PORT:-8000} (docs at /docs)"
.venv/bin/python -m backend "$@" &
children+=($!)
wait "${children[-1]}"
