"""Fine-tune jobs: validation, the queued record, listing, cancel, worker reporting, SSE stream."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx_sse import ServerSentEvent, connect_sse

from backend.schemas.jobs import JobProgress
from jobs import lifecycle as jobs_svc

from .conftest import AppFactory, annotate, make_project, random_image, upload_image


@pytest.fixture
def labelled(client: TestClient) -> dict:
    p = make_project(client, classes=2)
    img = upload_image(client, p["id"], random_image(32, 32))
    annotate(client, img["id"])
    return p


def test_create_needs_labels(client: TestClient) -> None:
    p = make_project(client)
    upload_image(client, p["id"])
    r = client.post(f"/projects/{p['id']}/jobs", json={})
    assert r.status_code == 409 and "no labelled images" in r.json()["detail"]
    assert client.post("/projects/999999/jobs", json={}).status_code == 404


def test_create_validation(client: TestClient, labelled: dict) -> None:
    url = f"/projects/{labelled['id']}/jobs"
    r = client.post(url, json={"base_version": 9})
    assert r.status_code == 422 and "base_version 9 does not exist" in r.json()["detail"]
    for bad in [{"steps": 0}, {"lr": -1}, {"kind": "train_gan"}, {"unknown": 1}, {"promote": "maybe"}]:
        assert client.post(url, json=bad).status_code == 422, bad


def test_queued_job_without_worker_stays_queued(client: TestClient, labelled: dict) -> None:
    r = client.post(f"/projects/{labelled['id']}/jobs", json={"steps": 20, "lr": 1e-4})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] == "queued" and job["base_version"] == 1 and job["params"]["steps"] == 20
    # handed to the (filesystem) broker: no worker consumes it in the API tests, so it stays queued
    assert job["progress"]["step"] is None and job["note"] is None
    got = client.get(f"/jobs/{job['id']}").json()
    assert got["state"] == "queued" and got["progress"] == job["progress"]
    listing = client.get(f"/projects/{labelled['id']}/jobs").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == job["id"]
    assert client.get(f"/projects/{labelled['id']}/jobs", params={"state": "running"}).json()["total"] == 0
    assert client.get(f"/projects/{labelled['id']}/jobs", params={"state": "bogus"}).status_code == 422


def test_cancel(client: TestClient, labelled: dict) -> None:
    job = client.post(f"/projects/{labelled['id']}/jobs", json={}).json()
    r = client.delete(f"/jobs/{job['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and r.json()["finished_at"]
    assert client.delete(f"/jobs/{job['id']}").status_code == 409
    assert client.delete("/jobs/999999").status_code == 404
    assert client.get("/jobs/999999").status_code == 404


def test_worker_reporting_and_running_cancel(client: TestClient, labelled: dict) -> None:
    """The functions the worker calls update what GET and the SSE stream show."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    job = client.post(f"/projects/{labelled['id']}/jobs", json={"steps": 100}).json()
    with ctx.sessions() as s:
        jobs_svc.mark_running(s, job["id"], task_id="task-1")
        stop = jobs_svc.record_progress(s, job["id"], JobProgress(step=10, total=100, loss={"pce": 0.5, "aff": 0.1},
                                                                  lr=1e-4, throughput=12.5, eta_s=30.0,
                                                                  metric={"miou": 0.4}))
        s.commit()
    assert stop is False
    got = client.get(f"/jobs/{job['id']}").json()
    assert got["state"] == "running" and got["note"] is None and got["started_at"]
    assert got["progress"]["step"] == 10 and got["progress"]["loss"] == {"pce": 0.5, "aff": 0.1}
    assert got["progress"]["metric"] == {"miou": 0.4} and got["progress"]["eta_s"] == 30.0
    r = client.delete(f"/jobs/{job['id']}")
    assert r.status_code == 202 and r.json()["state"] == "running" and r.json()["cancel_requested"] is True
    with ctx.sessions() as s:
        assert jobs_svc.record_progress(s, job["id"], JobProgress(step=11, total=100)) is True
        jobs_svc.finish(s, job["id"], "cancelled")
        s.commit()
        with pytest.raises(ValueError):
            jobs_svc.finish(s, job["id"], "running")
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "cancelled"


def test_sse_stream_ends_on_terminal_state(client: TestClient, labelled: dict) -> None:
    job = client.post(f"/projects/{labelled['id']}/jobs", json={}).json()
    client.delete(f"/jobs/{job['id']}")
    with connect_sse(client, "GET", f"/jobs/{job['id']}/events") as source:
        r = source.response
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(source.iter_sse())
    assert [e.event for e in events] == ["progress"]
    data = events[0].json()
    assert data["id"] == job["id"] and data["state"] == "cancelled" and events[0].id == data["updated_at"]
    assert client.get("/jobs/999999/events").status_code == 404


def test_sse_ends_cleanly_when_the_job_is_deleted(client: TestClient, labelled: dict) -> None:
    """Deleting the project while its job's stream is open ends the stream with an error event, not a
    broken chunked body (which the stream did before: an exception after the response had started)."""
    job = client.post(f"/projects/{labelled['id']}/jobs", json={}).json()
    received: list[ServerSentEvent] = []

    def listen() -> None:
        with connect_sse(client, "GET", f"/jobs/{job['id']}/events", params={"timeout": 20}) as source:
            received.extend(source.iter_sse())  # raises on a broken body

    reader = threading.Thread(target=listen)
    reader.start()
    time.sleep(1.0)
    assert client.delete(f"/projects/{labelled['id']}").status_code == 204
    reader.join(15)
    assert not reader.is_alive()
    events = [e.event for e in received]  # the deletion may first show the job cancelled, then gone
    assert events[0] == "progress" and events[-1] == "error" and set(events[:-1]) == {"progress"}, events
    assert received[-1].json() == {"detail": f"job {job['id']} not found", "code": "not_found"}


def test_sse_times_out_while_queued(client: TestClient, labelled: dict) -> None:
    job = client.post(f"/projects/{labelled['id']}/jobs", json={}).json()
    with client.stream("GET", f"/jobs/{job['id']}/events", params={"timeout": 0.3}) as r:
        text = "".join(r.iter_text())
    assert "event: progress" in text and text.rstrip().endswith("data: {}") and "event: timeout" in text


class RecordingQueue:
    """A JobQueue as the worker package will provide: records calls, hands out task ids."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.submitted: list[tuple[int, int, dict[str, Any]]] = []
        self.cancelled: list[tuple[int, str | None]] = []

    def available(self) -> str | None:
        return None

    def submit(self, job_id: int, project_id: int, params: dict[str, Any]) -> str | None:
        if self.fail:
            raise ConnectionError("broker down")
        self.submitted.append((job_id, project_id, params))
        return f"task-{job_id}"

    def cancel(self, job_id: int, task_id: str | None) -> None:
        self.cancelled.append((job_id, task_id))


def test_queue_plug_in(apps: AppFactory) -> None:
    from backend.app import create_app

    q = RecordingQueue()
    c = TestClient(create_app(apps.settings(), queue=q))
    p = make_project(c)
    annotate(c, upload_image(c, p["id"], random_image(32, 32))["id"])
    job = c.post(f"/projects/{p['id']}/jobs", json={"steps": 7}).json()
    assert q.submitted == [(job["id"], p["id"], job["params"])] and job["note"] is None
    c.delete(f"/jobs/{job['id']}")
    assert q.cancelled == [(job["id"], f"task-{job['id']}")]
    failing = TestClient(create_app(apps.settings(), queue=RecordingQueue(fail=True)))
    p = make_project(failing)
    annotate(failing, upload_image(failing, p["id"], random_image(32, 32))["id"])
    r = failing.post(f"/projects/{p['id']}/jobs", json={})
    assert r.status_code == 201 and r.json()["state"] == "failed" and "broker down" in r.json()["error"]
    c.app.state.ctx.engine.dispose()  # type: ignore[attr-defined]
    failing.app.state.ctx.engine.dispose()  # type: ignore[attr-defined]


def test_celery_queue_publishes_by_task_name(client: TestClient) -> None:
    """The API hands a job to the broker by task name alone (it never imports the worker): the message
    on the filesystem broker names ``jobs.queue.TASK_NAME`` and carries only the job id."""
    from jobs.queue import TASK_NAME, CeleryJobQueue

    settings = client.app.state.ctx.settings  # type: ignore[attr-defined]
    q = CeleryJobQueue(settings)
    assert q.available() is None
    task_id = q.submit(4242, 1, {"steps": 3})
    messages = [json.loads(f.read_text()) for d in settings.broker_folders if d.is_dir() for f in d.iterdir()
                if f.is_file() and f.suffix == ".msg"]
    mine = [m for m in messages if m["headers"].get("id") == task_id]
    assert len(mine) == 1 and mine[0]["headers"]["task"] == TASK_NAME
    assert json.loads(base64.b64decode(mine[0]["body"]))[0] == [4242]


def test_auto_train_queues_a_job_after_n_saves_unless_one_is_active(apps: AppFactory) -> None:
    """Train-on-submit: the third save since the last job queues one (default recipe, author auto-train);
    while it is queued or running, saves queue nothing more; with the setting at 0 nothing is queued."""
    from backend.app import create_app

    q = RecordingQueue()
    c = TestClient(create_app(apps.settings(auto_train_after_saves=3), queue=q))
    p = make_project(c, classes=2)
    a, b = (upload_image(c, p["id"], random_image(32, 32, seed=s))["id"] for s in (1, 2))
    etag_a = annotate(c, a).headers["ETag"]
    annotate(c, b)
    assert q.submitted == [] and c.get(f"/projects/{p['id']}/jobs").json()["items"] == []
    etag_a = annotate(c, a, if_match=etag_a).headers["ETag"]  # third save
    jobs = c.get(f"/projects/{p['id']}/jobs").json()["items"]
    assert len(jobs) == 1 and jobs[0]["author"] == "auto-train" and jobs[0]["state"] == "queued"
    assert q.submitted == [(jobs[0]["id"], p["id"], jobs[0]["params"])]
    for _ in range(3):  # the job is still queued: nothing more
        etag_a = annotate(c, a, if_match=etag_a).headers["ETag"]
    assert len(c.get(f"/projects/{p['id']}/jobs").json()["items"]) == 1
    c.delete(f"/jobs/{jobs[0]['id']}")
    for _ in range(3):  # three saves after the (cancelled) job: the next one
        etag_a = annotate(c, a, if_match=etag_a).headers["ETag"]
    assert len(c.get(f"/projects/{p['id']}/jobs").json()["items"]) == 2
    off = TestClient(create_app(apps.settings(), queue=RecordingQueue()))
    p = make_project(off, classes=2)
    img = upload_image(off, p["id"], random_image(32, 32))["id"]
    etag = annotate(off, img).headers["ETag"]
    for _ in range(4):
        etag = annotate(off, img, if_match=etag).headers["ETag"]
    assert off.get(f"/projects/{p['id']}/jobs").json()["items"] == []
    for client in (c, off):
        client.app.state.ctx.engine.dispose()  # type: ignore[attr-defined]
