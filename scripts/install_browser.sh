#!/usr/bin/env bash
# Install Debian's chromium + chromium-driver for the browser tests (tests/e2e) if they are missing.
# Idempotent and cheap: when both binaries exist it only checks and exits. Needs root (or sudo) the
# first time; browsers are never downloaded by tools (no Playwright/Selenium-manager downloads).
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "[install_browser] chromium/chromedriver missing and not root: browser tests will be skipped" >&2
        exit 0
    fi
fi
echo "[install_browser] installing chromium and chromium-driver (apt)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
