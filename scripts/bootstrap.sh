#!/usr/bin/env bash
# Create the project's virtual environment once (./.venv) and install the pinned dependencies.
# Re-running is cheap: when pyproject.toml has not changed since the last successful install,
# nothing is installed again.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    echo "[bootstrap] creating $venv (first run: torch is a large wheel, ~2 minutes)"
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
fi
stamp="$venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)${extras:+-$extras}"
if [ ! -f "$stamp" ]; then
    spec="."
    [ -n "$extras" ] && spec=".[$extras]"
    echo "[bootstrap] installing $spec into $venv"
    "$venv/bin/pip" install --quiet -e "$spec"
    touch "$stamp"
fi
