"""The service as a user starts it (``python -m backend``), in a subprocess on a free loopback port, with a
temp data directory: shared by the browser tests, the schemathesis CLI test and the UI benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The service as a user starts it (``python -m backend``), on a free loopback port."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        """``env``: settings on top of the defaults here (e.g. limits, ``SASFORMER_UI_ENABLED``)."""
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env_extra = env or {}
        env = {**os.environ, "SASFORMER_HOME": str(home), "SASFORMER_LOG_JSON": "false",
               "SASFORMER_LOG_LEVEL": "WARNING", "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
        for k in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SASFORMER_ADMIN_TOKENS", "SASFORMER_READ_TOKENS"):
            env.pop(k, None)
        self.log = open(home / "server.log", "w")  # noqa: SIM115 - closed in stop()
        env.update(env_extra)
        self.proc = subprocess.Popen([sys.executable, "-m", "backend", "--port", str(self.port)], cwd=REPO,
                                     env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server not ready after {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        self.log.flush()
        return (self.home / "server.log").read_text()[-5000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
