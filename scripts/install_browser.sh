#!/usr/bin/env bash
# Debian's chromium + chromium-driver for the browser tests (tests/e2e); no-op when present.
exec bash "$(dirname "$0")/apt_ensure.sh" install_browser \
    'command -v chromium && test -x /usr/bin/chromedriver' chromium chromium-driver
