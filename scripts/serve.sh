#!/usr/bin/env bash
# Install (once) and start SASFormer Studio's API on 127.0.0.1:8000.
# Embedded default: SQLite and files under ./data (or $SASFORMER_HOME); no database or broker server needed.
# Host/port come from SASFORMER_HOST / SASFORMER_PORT (or .env); extra arguments go to `python -m backend`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False

# --- background workers --------------------------------------------------------------------------
# The fine-tune worker (Celery) runs as a child process with the same settings as the API: by default
# the filesystem broker and file results under the data directory (no server); Redis when REDIS_URL or
# CELERY_BROKER_URL is set. SASFORMER_EMBEDDED_WORKER=0 skips it (workers run elsewhere, e.g. on a GPU
# machine: `celery -A worker.celery_app worker` there, against the same database and Redis).
# On exit the worker gets a cold shutdown (SIGQUIT): a running job stops at once and resumes from its
# last checkpoint when the worker starts again (its sweeper re-queues jobs whose process is gone).
children=()
worker_pid=""
cleanup() {
    [ -n "$worker_pid" ] && kill -QUIT "$worker_pid" 2>/dev/null || true
    for pid in "${children[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
if [ "${SASFORMER_EMBEDDED_WORKER:-1}" != "0" ]; then
    logdir="${SASFORMER_HOME:-data}/jobs"
    mkdir -p "$logdir"
    echo "[serve] fine-tune worker (Celery, log in $logdir/worker.log)"
    .venv/bin/celery -A worker.celery_app worker --loglevel INFO --hostname "sasformer@%h" \
        --without-gossip --without-mingle >>"$logdir/worker.log" 2>&1 &
    worker_pid=$!
fi

# --- API ---------------------------------------------------------------------------------------------
echo "[serve] SASFormer Studio API on http://${SASFORMER_HOST:-127.0.0.1}:${SASFORMER_PORT:-8000} (docs at /docs)"
.venv/bin/python -m backend "$@" &
children+=($!)
wait "${children[-1]}"
