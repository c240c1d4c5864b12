"""The real schemathesis CLI against the served API: every check, every phase (stateful included), 0 failures.

The server is ``python -m backend`` (uvicorn) on a free port with its home in a temporary directory,
seeded with a project, an image with an annotation and a queued job (no worker runs), so generated ids of 1
reach real code. The run is bounded (``--max-examples``, deterministic generation) to stay near a minute
on two cores. tests/api/schemathesis.toml lists the few per-operation allowances for rules that depend on
stored data; everything else is what the OpenAPI schema promises. In-process, test_schemathesis.py asks a
narrower question (no 5xx) of every operation.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, connect_sse

from tests.served import Server

from .conftest import png_bytes, random_image

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(tmp_path_factory.mktemp("st-home"), env={
        "SASFORMER_UI_ENABLED": "false",
        # small limits: generated uploads stay small, and the limits themselves get exercised
        "SASFORMER_MAX_UPLOAD_BYTES": str(256 * 1024), "SASFORMER_MAX_IMAGE_PIXELS": str(512 * 512)})
    try:
        srv.wait_ready()
        with httpx.Client(base_url=srv.url, timeout=60) as c:
            assert _queued_job(c, "seed") == 1  # ids 1 exist
        yield srv
    finally:
        srv.stop()


def _queued_job(c: httpx.Client, name: str) -> int:
    """A project with one annotated image and a fine-tune job, which stays queued (no worker runs)."""
    r = c.post("/projects", json={"name": name, "classes": [{"name": "bg"}, {"name": "fg"}]})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = c.post(f"/projects/{pid}/images", files={"file": ("a.png", png_bytes(random_image(32, 32)), "image/png")})
    assert r.status_code == 201, r.text
    r = c.put(f"/images/{r.json()['id']}/annotation",
              json={"strokes": [{"class_id": 1, "width": 3, "points": [[2, 2], [20, 10]]}]})
    assert r.status_code == 200, r.text
    r = c.post(f"/projects/{pid}/jobs", json={"steps": 5})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def test_schemathesis_cli_all_checks(served: Server, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    cmd = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG), "run",
           f"{served.url}/openapi.json",
           "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
           "--max-examples", "5", "--generation-deterministic",
           "--request-timeout", "10", "--workers", "1", "--no-color", "--output-truncate", "true",
           "--report", "junit", "--report-junit-path", str(junit)]
    start = time.monotonic()
    run = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - start
    out = run.stdout + run.stderr
    assert run.returncode == 0, f"schemathesis found failures ({elapsed:.0f} s):\n{out[-12000:]}"
    # the run covered the API and its phases ran (rather than being skipped)
    tested = re.search(r"Tested: (\d+)", out)
    assert tested and int(tested.group(1)) >= 40, out[-3000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅\s+{phase} \(in", out), (phase, out[-3000:])
    assert junit.is_file()


def test_event_stream_ends_cleanly_when_the_server_stops(served: Server) -> None:
    """Last in the module: stopping the server (SIGTERM, as on a deploy) ends an open job stream with an
    ``error`` event (code ``unavailable``) and a complete body, rather than cutting it mid-chunk."""
    with httpx.Client(base_url=served.url, timeout=60) as c:
        job_id = _queued_job(c, "shutdown")
        received: list[ServerSentEvent] = []
        failures: list[BaseException] = []

        def listen() -> None:
            try:
                with connect_sse(c, "GET", f"/jobs/{job_id}/events", params={"timeout": 60}) as source:
                    received.extend(source.iter_sse())  # raises on a broken body
            except BaseException as e:  # reported below
                failures.append(e)

        reader = threading.Thread(target=listen)
        reader.start()
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        served.proc.send_signal(signal.SIGTERM)
        reader.join(20)
    assert not reader.is_alive() and not failures, failures
    assert [e.event for e in received] == ["progress", "error"], received
    assert received[-1].json()["code"] == "unavailable"
    assert served.proc.wait(20) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once it has stopped
