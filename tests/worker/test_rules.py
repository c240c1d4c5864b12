"""Recovery rules and the held-out split without a broker (the worker tests exercise them end to end)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from backend.app import create_app
from core.db import utcnow
from core.orm import Job
from core.settings import Settings
from jobs import lifecycle as jobs_svc
from jobs.holdout import heldout_mask, split_labels
from tests.api.conftest import annotate, make_project, random_image, upload_image
from tests.api.test_jobs import RecordingQueue
from worker.finetune import decide


def _app(tmp_path: Path, **kw: object) -> tuple[TestClient, RecordingQueue]:
    q = RecordingQueue()
    settings = Settings(home=tmp_path, environment="test", log_level="WARNING", job_stale_after_s=30,
                        job_max_attempts=2, **kw)  # type: ignore[arg-type]
    return TestClient(create_app(settings, queue=q)), q


def _running_job(c: TestClient, worker: str, attempts: int, heartbeat_age_s: float) -> int:
    p = make_project(c, classes=2)
    annotate(c, upload_image(c, p["id"], random_image(32, 32))["id"])
    job = c.post(f"/projects/{p['id']}/jobs", json={"steps": 5}).json()
    ctx = c.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as s:
        row = s.get(Job, job["id"])
        row.state, row.worker, row.attempts = "running", worker, attempts
        row.started_at = row.heartbeat_at = utcnow() - timedelta(seconds=heartbeat_age_s)
        s.commit()
    return int(job["id"])


def test_lost_job_is_requeued_then_failed_when_out_of_attempts(tmp_path: Path) -> None:
    c, q = _app(tmp_path)
    dead = f"{jobs_svc.socket.gethostname()}:{2**22 + 12345}"  # above pid_max: no such process
    job_id = _running_job(c, dead, attempts=1, heartbeat_age_s=0)
    j = c.get(f"/jobs/{job_id}").json()  # reading it notices the dead process
    assert j["state"] == "queued" and "died" in j["progress"]["message"] and q.submitted[-1][0] == job_id
    job_id = _running_job(c, dead, attempts=2, heartbeat_age_s=0)
    j = c.get(f"/jobs/{job_id}").json()
    assert j["state"] == "failed" and "attempt 2 of 2" in j["error"] and "died" in j["error"]


def test_silent_worker_on_another_host_is_lost_only_after_the_stale_time(tmp_path: Path) -> None:
    c, _ = _app(tmp_path)
    fresh = _running_job(c, "elsewhere:1", attempts=1, heartbeat_age_s=5)
    assert c.get(f"/jobs/{fresh}").json()["state"] == "running"
    stale = _running_job(c, "elsewhere:1", attempts=1, heartbeat_age_s=60)
    j = c.get(f"/jobs/{stale}").json()
    assert j["state"] == "queued" and "no heartbeat" in j["progress"]["message"]


def test_claim_runs_a_job_once(tmp_path: Path) -> None:
    c, _ = _app(tmp_path)
    p = make_project(c, classes=2)
    annotate(c, upload_image(c, p["id"], random_image(32, 32))["id"])
    job = c.post(f"/projects/{p['id']}/jobs", json={"steps": 5}).json()
    ctx = c.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as s:
        first = jobs_svc.claim(s, job["id"], ctx.settings, me=f"{jobs_svc.socket.gethostname()}:1")
        s.commit()
        second = jobs_svc.claim(s, job["id"], ctx.settings, me="other:2")  # pid 1 is alive
        s.commit()
    assert first.run and first.attempt == 1 and not first.resume
    assert not second.run and "running in" in second.reason


def test_heldout_split_is_stable_and_keeps_classes_trainable() -> None:
    label = np.full((64, 64), 255, np.uint8)
    label[8:10, 4:60], label[40:42, 4:60] = 0, 1
    a = split_labels([label], ["sha-a"], 0.3, seed=0)
    assert a.train_pixels + a.heldout_pixels == int((label != 255).sum()) and a.heldout_pixels > 0
    assert not ((a.train[0] != 255) & (a.heldout[0] != 255)).any()
    more = label.copy()
    more[20:22, 4:60] = 1  # the user draws more: the old pixels keep their side of the split
    b = split_labels([more], ["sha-a"], 0.3, seed=0)
    old = label != 255
    assert np.array_equal(b.heldout[0][old], a.heldout[0][old])
    mask = heldout_mask((64, 64), "sha-a", 0.3, 0)
    assert 0 < mask.mean() < 0.6 and np.array_equal(mask, heldout_mask((64, 64), "sha-a", 0.3, 0))
    dot = np.full((64, 64), 255, np.uint8)
    dot[30, 30] = 1  # a single click cannot be both trained on and held out: it trains
    assert split_labels([dot], ["x"], 0.5, 0).train_pixels == 1
    assert split_labels([label], ["sha-a"], 0.0, 0).heldout_pixels == 0


def test_promotion_rule() -> None:
    assert decide("if_better", {"miou": 0.6}, {"miou": 0.5})[0] is True
    assert decide("if_better", {"miou": 0.5}, {"miou": 0.5})[0] is False
    assert decide("if_better", {}, {"miou": 0.1})[0] is False
    assert decide("always", {}, {"miou": 0.9})[0] is True and decide("never", {"miou": 1}, {"miou": 0})[0] is False
