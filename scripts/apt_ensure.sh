#!/usr/bin/env bash
# Install Debian packages for a test tool when its check fails; idempotent and cheap when present.
# Usage: scripts/apt_ensure.sh LABEL 'CHECK COMMAND' PACKAGE... (e.g. the browser or docker-compose).
# Needs root (or sudo) the first time; without either it says which tests will be skipped and exits 0.
# Nothing is downloaded by a tool of its own: only Debian's packages, through apt.
set -euo pipefail
label=$1 check=$2
shift 2
if bash -c "$check" >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "[$label] $* missing and not root: the tests that need them will be skipped" >&2
        exit 0
    fi
fi
echo "[$label] installing $* (apt)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
