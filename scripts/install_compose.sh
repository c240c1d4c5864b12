#!/usr/bin/env bash
# Install Debian's docker-compose (1.29) if missing, for tests/deploy: `docker-compose -f docker-compose.yml
# config -q` validates the compose files without a Docker engine. Idempotent and cheap: when the command
# exists it only checks and exits. Needs root (or sudo) the first time; without either the compose
# validation test is skipped, with the reason.
set -euo pipefail
if command -v docker-compose >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "[install_compose] docker-compose missing and not root: compose validation will be skipped" >&2
        exit 0
    fi
fi
echo "[install_compose] installing docker-compose (apt)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
