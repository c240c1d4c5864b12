#!/usr/bin/env bash
# Install (once) and run the test suite. Extra arguments go to pytest, e.g. `-m slow` or `-k affinity`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
bash scripts/install_browser.sh   # Debian chromium + chromium-driver for tests/e2e (no-op when present)
bash scripts/install_compose.sh   # docker-compose 1.29 validates the compose files (tests/deploy)
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 GRADIO_ANALYTICS_ENABLED=False
.venv/bin/ruff check model core jobs backend worker webui tests bench scripts
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
