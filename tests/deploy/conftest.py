"""Shared helpers of the deployment tests: the repository root, and ``docker-compose`` (installed when missing)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def docker_compose() -> str:
    """Path of ``docker-compose``; ``scripts/install_compose.sh`` installs Debian's package when it is missing."""
    exe = shutil.which("docker-compose")
    if exe is None:
        subprocess.run(["bash", str(ROOT / "scripts" / "install_compose.sh")], check=True, timeout=600)
        exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is missing and could not be installed (not root, no sudo)")
    return exe
