"""The compose topology without containers: what docker-compose.yml runs, as plain processes on this machine.

* the API: ``python -m backend`` (uvicorn) in a subprocess, like the ``api`` service;
* two workers: the ``worker`` service's command (``celery -A worker.celery_app worker -Q gpu --concurrency 1``),
  each in its own UTS namespace with its own hostname (``node-a``, ``node-b``), so, as in containers or on two
  machines, neither can tell by PID whether the other's process is alive: lost jobs are found by heartbeat;
* the real Redis (127.0.0.1:6379, database 14, flushed afterwards) as broker and result backend
  (``REDIS_URL``), and the real PostgreSQL (127.0.0.1:5432, a fresh database created and dropped here);
* one temporary ``SASFORMER_HOME`` shared by all three processes (the ``sasformer-data`` volume).

Two fine-tune jobs run at the same time on the two workers; a worker killed with SIGKILL mid-job has its job
finished by the other one (or failed with a reason), never left "running". Jobs are tiny (MiT-b0, 64 px) and
torch runs on one thread per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.api.conftest import png_bytes

from .conftest import ROOT

REDIS_URL = os.environ.get("SASFORMER_TOPOLOGY_REDIS_URL", "redis://127.0.0.1:6379/14")
PG_ADMIN_URL = os.environ.get("SASFORMER_TOPOLOGY_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CELERY = str(Path(sys.executable).with_name("celery"))
TOKEN = "topology-admin-token-0123456789"
TERMINAL = ("succeeded", "failed", "cancelled")
NODES = ("node-a", "node-b")
# The worker service's command in docker-compose.yml (test_compose checks the same words there).
WORKER_CMD = [CELERY, "-A", "worker.celery_app", "worker", "-Q", "gpu", "--concurrency", "1", "--loglevel", "INFO"]


def _unavailable(what: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} (needed in CI)")
    pytest.skip(what)


def _uts_namespaces() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname sasformer-probe && hostname"],
                       capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "sasformer-probe"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Topology:
    """API + workers as processes, sharing Redis, PostgreSQL and one SASFORMER_HOME."""

    def __init__(self, home: Path, database_url: str) -> None:
        self.home = home
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("SASFORMER_") and k not in ("REDIS_URL", "DATABASE_URL", "CELERY_BROKER_URL",
                                                                     "CELERY_RESULT_BACKEND")}
        self.env.update({
            # as in docker-compose.yml's x-env (auth on; jobs go to the gpu queue the workers consume)
            "SASFORMER_HOME": str(home), "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
            "SASFORMER_ADMIN_TOKENS": TOKEN, "SASFORMER_JOB_QUEUE": "gpu", "SASFORMER_WORKER_QUEUES": "gpu",
            # short recovery times for the test: heartbeat 0.5 s, lost after 5 s, Redis re-delivers after 15 s
            "SASFORMER_ENVIRONMENT": "test", "SASFORMER_WORKER_VISIBILITY_TIMEOUT_S": "15",
            "SASFORMER_JOB_HEARTBEAT_S": "0.5", "SASFORMER_JOB_STALE_AFTER_S": "5",
            "SASFORMER_JOB_SWEEP_INTERVAL_S": "1", "SASFORMER_JOB_CHECKPOINT_EVERY": "2",
            "SASFORMER_JOB_MAX_ATTEMPTS": "3",
            "SASFORMER_DEVICE": "cpu", "SASFORMER_UI_ENABLED": "false", "SASFORMER_LOG_LEVEL": "INFO",
            "SASFORMER_LOG_JSON": "false", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT),
        })
        self.api: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        self.isolated = _uts_namespaces()

    # ---- processes ---------------------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        with open(self.home / f"{name}.log", "ab") as out:
            return subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def log(self, name: str) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def logs(self) -> str:
        return "\n".join(f"--- {n} ---\n{self.log(n)[-3000:]}" for n in ("api", *NODES))

    def _wait(self, what: str, ready: Callable[[], bool], proc: subprocess.Popen[bytes], name: str,
              timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-4000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"{what} after {timeout} s:\n{self.log(name)[-4000:]}")

    def start_api(self, timeout: float = 90) -> None:
        self.api = self._spawn("api", [sys.executable, "-m", "backend", "--host", "127.0.0.1", "--port",
                                       str(self.port)])

        def healthy() -> bool:
            try:
                return self.http.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        self._wait("API not healthy", healthy, self.api, "api", timeout)

    def start_workers(self, nodes: tuple[str, ...], timeout: float = 120) -> None:
        """The compose worker command, one per node, started together (like ``--scale worker=2``); each with
        its own hostname when UTS namespaces are available (root)."""
        for node in nodes:
            if self.isolated:
                cmd = ["unshare", "--uts", "sh", "-c", f'hostname {node} && exec "$@"', "sh", *WORKER_CMD]
            else:
                cmd = [*WORKER_CMD, "-n", f"celery@{node}"]
            self.workers[node] = self._spawn(node, cmd)
        for node in nodes:
            self._wait(f"worker {node} not ready", lambda n=node: " ready." in self.log(n),  # type: ignore[misc]
                       self.workers[node], node, timeout)

    def kill(self, node: str) -> None:
        """SIGKILL the worker's whole process group: main process and the pool child running the job."""
        proc = self.workers[node]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=20)

    def close(self) -> None:
        for proc in [*self.workers.values(), self.api]:
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.http.close()

    # ---- which worker runs a job ---------------------------------------------------------------------
    def node_of(self, worker: str | None) -> str | None:
        """The node of a jobs.worker value (``host:pid`` of the pool child)."""
        if not worker:
            return None
        host, _, pid = worker.rpartition(":")
        if self.isolated:
            return host if host in NODES else None
        try:  # same host for both: the pool child's parent is the worker's main process
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            return None
        return next((n for n, p in self.workers.items() if p.pid == ppid), None)

    def claims(self, job_id: int) -> list[dict[str, Any]]:
        path = self.home / "jobs" / str(job_id) / "log.jsonl"
        events = [json.loads(ln) for ln in path.read_text().splitlines()] if path.is_file() else []
        return [e for e in events if e["event"] == "claimed"]

    # ---- API ---------------------------------------------------------------------------------------
    def project(self) -> int:
        """A project with one 64x64 image (dark left, bright right) and scribbles of two classes."""
        r = self.http.post("/projects", json={"name": f"p-{uuid.uuid4().hex[:10]}",
                                              "classes": [{"name": "dark"}, {"name": "bright"}]})
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        rng = np.random.default_rng(pid)
        img = np.zeros((64, 64, 3), np.int16)
        img[:, :32], img[:, 32:] = 40, 200
        img = np.clip(img + rng.integers(-20, 20, img.shape), 0, 255).astype(np.uint8)
        r = self.http.post(f"/projects/{pid}/images", files={"file": ("a.png", png_bytes(img), "image/png")})
        assert r.status_code == 201, r.text
        strokes = [{"class_id": 0, "width": 3, "points": [[5, 4], [25, 60]]},
                   {"class_id": 0, "width": 3, "points": [[14, 4], [14, 60]]},
                   {"class_id": 1, "width": 3, "points": [[40, 4], [60, 60]]},
                   {"class_id": 1, "width": 3, "points": [[50, 4], [50, 60]]}]
        r = self.http.put(f"/images/{r.json()['id']}/annotation", json={"strokes": strokes})
        assert r.status_code == 200, r.text
        return int(pid)

    def submit(self, project_id: int, steps: int, promote: str = "always") -> int:
        body = {"steps": steps, "batch_size": 2, "crop_size": 64, "lr": 1e-3, "val_fraction": 0.25,
                "promote": promote}
        r = self.http.post(f"/projects/{project_id}/jobs", json=body)
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def job(self, job_id: int) -> dict[str, Any]:
        r = self.http.get(f"/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def worker_column(self, job_id: int) -> str | None:
        """jobs.worker straight from PostgreSQL (the API does not publish it)."""
        import psycopg

        with psycopg.connect(self.database_url) as conn:
            row = conn.execute("SELECT worker FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return row[0] if row else None


@pytest.fixture(scope="module")
def topo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    import psycopg
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as e:
        _unavailable(f"Redis not reachable at {REDIS_URL}: {e}")
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception as e:
        _unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {e}")
    dbname = f"sasformer_topology_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{dbname}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    t = Topology(tmp_path_factory.mktemp("sasformer-home"), f"{base}/{dbname}")
    try:
        t.start_api()  # first, like compose's depends_on: the API migrates the empty database
        t.start_workers(NODES)
        yield t
    finally:
        t.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        admin.close()
        r = redis.Redis.from_url(REDIS_URL)
        r.flushdb()
        r.close()


def test_api_ready_against_redis_and_postgres(topo: Topology) -> None:
    r = topo.http.get("/ready")
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert all(c["ok"] for c in checks.values()), checks
    assert checks["database"]["detail"] == "postgresql", checks
    assert "redis" in checks["broker"]["detail"].lower() or "6379" in checks["broker"]["detail"], checks
    assert topo.http.get("/projects", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401


def test_two_jobs_run_at_once_on_two_workers(topo: Topology) -> None:
    projects = [topo.project(), topo.project()]
    jobs = [topo.submit(p, steps=40) for p in projects]
    running_together: dict[int, str | None] = {}
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        states = {j: topo.job(j) for j in jobs}
        if all(s["state"] == "running" for s in states.values()) and not running_together:
            running_together = {j: topo.node_of(topo.worker_column(j)) for j in jobs}
        if all(s["state"] in TERMINAL for s in states.values()):
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"jobs not done: {states}\n{topo.logs()}")
    assert all(s["state"] == "succeeded" for s in states.values()), (states, topo.logs())
    # both were observed running at the same time, on two different workers
    assert running_together, f"the two jobs never ran at the same time: {states}"
    assert set(running_together.values()) == set(NODES), running_together
    a, b = states.values()
    assert max(a["started_at"], b["started_at"]) < min(a["finished_at"], b["finished_at"]), (a, b)
    if topo.isolated:  # the hostnames the workers recorded are their own
        hosts = {topo.claims(j)[0]["worker"].rpartition(":")[0] for j in jobs}
        assert hosts == set(NODES), hosts
    # each new version was written by a worker into the shared storage and is served by the API
    for p, j in zip(projects, jobs, strict=True):
        version = states[j]["result_version"]
        assert version is not None and states[j]["result"]["promoted"] is True
        r = topo.http.post("/segment", data={"project_id": str(p), "format": "png"},
                           files={"file": ("x.png", png_bytes(np.full((64, 64, 3), 90, np.uint8)), "image/png")})
        assert r.status_code == 200, r.text
        assert r.headers["X-Model-Version"] == str(version)


def test_killed_worker_job_is_finished_by_the_other(topo: Topology) -> None:
    project = topo.project()
    job_id = topo.submit(project, steps=60)
    deadline = time.monotonic() + 120
    victim = None
    while time.monotonic() < deadline:
        j = topo.job(job_id)
        assert j["state"] not in TERMINAL, (j, topo.logs())
        if j["state"] == "running" and (j["progress"]["step"] or 0) >= 6:
            victim = topo.node_of(topo.worker_column(job_id))
            if victim is not None:
                break
        time.sleep(0.1)
    assert victim in NODES, f"job {job_id} never reached step 6 on a known worker: {topo.job(job_id)}"
    survivor = next(n for n in NODES if n != victim)
    killed_at = time.monotonic()
    topo.kill(victim)

    seen_running_after: list[float] = []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        j = topo.job(job_id)
        if j["state"] in TERMINAL:
            break
        if j["state"] == "running" and topo.node_of(topo.worker_column(job_id)) == victim:
            seen_running_after.append(time.monotonic() - killed_at)
        time.sleep(0.2)
    else:
        raise TimeoutError(f"job {job_id} still {topo.job(job_id)['state']} 150 s after the kill:\n{topo.logs()}")

    # never stuck: the dead worker's "running" lasted at most about the stale time (5 s) plus a sweep
    assert not seen_running_after or max(seen_running_after) < 15, seen_running_after
    if j["state"] == "failed":
        assert j["error"], j  # failed, then with the reason
        return
    assert j["state"] == "succeeded", (j, topo.logs())
    assert j["attempts"] == 2 and j["progress"]["attempt"] == 2, j
    # resumed from a checkpoint, not from scratch: the kill came at step >= 6, when the checkpoint of that
    # step (every 2) may still be being written, so the one before it (step 4) is the latest that must exist
    assert j["progress"]["resumed_from"] >= 4, j["progress"]
    claims = topo.claims(job_id)
    assert [c["attempt"] for c in claims] == [1, 2], claims
    if topo.isolated:
        assert [c["worker"].rpartition(":")[0] for c in claims] == [victim, survivor], claims
    assert topo.workers[survivor].poll() is None, "the surviving worker is still up"
