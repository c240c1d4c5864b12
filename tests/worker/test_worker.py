"""The fine-tune worker end to end, with a real Celery worker process on each broker (filesystem, Redis).

Submit -> progress advances -> completes -> version registered and promoted (or kept as a candidate,
both decided deterministically with constant-prediction active versions); cancel running and queued
jobs; two queued jobs run one after the other; kill -9 mid-job then recovery; bad inputs fail fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

from .conftest import WorkerEnv


def log_events(wenv: WorkerEnv, job_id: int) -> list[dict]:
    path = wenv.job_dir(job_id) / "log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def test_submit_progress_complete_promote(wenv: WorkerEnv) -> None:
    p, image_id = wenv.project("two_classes")
    # the active version predicts class 2 everywhere: held-out mIoU 0 on labels of classes 0/1, so a
    # model trained from version 1 that gets any held-out pixel right must be promoted
    bad = wenv.constant_version(p["id"], 2)
    t0 = time.monotonic()
    job = wenv.submit(p["id"], base_version=1, steps=30)
    assert job["state"] in ("queued", "running") and job["base_version"] == 1
    seen: list[dict] = []
    done = wenv.wait(job["id"], lambda j: j["state"] == "succeeded", seen=seen)
    elapsed = time.monotonic() - t0
    steps = [j["progress"]["step"] for j in seen if j["progress"]["step"] is not None]
    assert len(set(steps)) >= 2 and steps == sorted(steps), steps  # progress advanced, monotonically
    running = [j for j in seen if j["state"] == "running" and j["progress"]["step"]]
    assert running and all(j["progress"]["total"] == 30 for j in running)
    assert {"loss", "pce", "aff"} <= set(running[-1]["progress"]["loss"])
    assert any(j["progress"]["lr"] > 0 for j in running)
    assert running[-1]["progress"]["throughput"] > 0 and running[-1]["progress"]["eta_s"] is not None

    res = done["result"]
    assert done["attempts"] == 1 and done["progress"]["step"] == 30 and "miou" in done["progress"]["metric"]
    assert res["promoted"] is True and res["compared_with"] == bad and res["active"]["miou"] == 0.0
    assert res["candidate"]["miou"] > 0 and res["heldout_pixels"] > 0, res
    assert done["result_version"] == res["version"] == bad + 1
    active = wenv.client.get(f"/projects/{p['id']}/models/active").json()
    assert active["version"] == res["version"] and active["job_id"] == job["id"] and active["parent_version"] == 1
    prov = active["provenance"]
    assert prov["base_version"] == 1 and prov["labels"][0]["image_id"] == image_id
    assert prov["labels"][0]["revision"] == 1 and prov["labels"][0]["revision_id"]
    assert prov["hyper_parameters"]["steps"] == 30 and prov["hyper_parameters"]["lr"] == 1e-3
    assert prov["code_version"] and prov["heldout"]["heldout_pixels"] == res["heldout_pixels"]
    assert active["metrics"]["heldout"]["miou"] == res["candidate"]["miou"]
    # predictions switch to the promoted version without a restart
    r = wenv.client.post("/segment", data={"image_id": image_id, "format": "png"})
    assert r.status_code == 200 and r.headers["x-model-version"] == str(res["version"])
    # the JSONL log of the job: claim, data split, train and validation events, result
    events = [e["event"] for e in log_events(wenv, job["id"])]
    assert events[0] == "claimed" and "data" in events and "val" in events and events[-1] == "result"
    assert sum(e == "train" for e in events) == 30
    assert wenv.client.get(f"/jobs/{job['id']}/log").status_code == 200
    assert elapsed < 90


def test_not_better_is_kept_as_candidate(wenv: WorkerEnv) -> None:
    p, _ = wenv.project("class0")
    # the active version predicts class 0 everywhere and every label is class 0: held-out mIoU 1.0,
    # which no new version can exceed, so it must stay a candidate
    best = wenv.constant_version(p["id"], 0)
    job = wenv.submit(p["id"], base_version=1, steps=4)
    done = wenv.wait_done(job["id"])
    assert done["state"] == "succeeded", done
    res = done["result"]
    assert res["promoted"] is False and res["active"]["miou"] == 1.0 and "kept as a candidate" in res["reason"]
    assert wenv.client.get(f"/projects/{p['id']}/models/active").json()["version"] == best
    cand = wenv.client.get(f"/projects/{p['id']}/models/{res['version']}").json()
    assert cand["active"] is False and cand["job_id"] == job["id"]
    # the user can promote the candidate, and roll back in one call
    assert wenv.client.post(f"/projects/{p['id']}/models/{res['version']}/promote").status_code == 200
    assert wenv.client.post(f"/projects/{p['id']}/models/rollback").json()["version"] == best


def test_cancel_running_job_keeps_checkpoint(wenv: WorkerEnv) -> None:
    p, _ = wenv.project("two_classes")
    versions_before = len(wenv.client.get(f"/projects/{p['id']}/models").json())
    job = wenv.submit(p["id"], steps=5000)
    wenv.wait(job["id"], lambda j: j["state"] == "running" and (j["progress"]["step"] or 0) >= 4)
    t0 = time.monotonic()
    r = wenv.client.delete(f"/jobs/{job['id']}")
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    done = wenv.wait_done(job["id"], timeout=30)
    took = time.monotonic() - t0
    assert done["state"] == "cancelled" and took < 10, (done, took)
    assert done["progress"]["step"] < 5000 and "checkpoint kept" in done["progress"]["message"]
    assert (wenv.job_dir(job["id"]) / "run" / "checkpoint.pt").is_file()
    assert len(wenv.client.get(f"/projects/{p['id']}/models").json()) == versions_before  # nothing registered
    assert wenv.client.delete(f"/jobs/{job['id']}").status_code == 409


def test_queued_jobs_run_in_order_and_cancelled_one_never_runs(wenv: WorkerEnv) -> None:
    p, _ = wenv.project("two_classes")
    a = wenv.submit(p["id"], steps=12, promote="never")
    b = wenv.submit(p["id"], steps=12, promote="never")
    c = wenv.submit(p["id"], steps=12, promote="never")
    r = wenv.client.delete(f"/jobs/{c['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    da, db = wenv.wait_done(a["id"]), wenv.wait_done(b["id"])
    assert da["state"] == db["state"] == "succeeded"
    assert da["finished_at"] <= db["started_at"], (da, db)  # one worker, concurrency 1: one after the other
    time.sleep(2)  # give the worker time to pick up (and drop) the cancelled job's message
    dc = wenv.job(c["id"])
    assert dc["state"] == "cancelled" and dc["started_at"] is None and dc["attempts"] == 0
    assert not (wenv.job_dir(c["id"]) / "run").exists()


def test_kill9_pool_process_resumes_from_checkpoint(wenv: WorkerEnv) -> None:
    """The process running the job dies: Celery re-delivers (acks_late + reject_on_worker_lost) and the
    next attempt resumes from the checkpoint."""
    p, _ = wenv.project("two_classes")
    job = wenv.submit(p["id"], steps=60, promote="always")
    j = wenv.wait(job["id"], lambda j: j["state"] == "running" and (j["progress"]["step"] or 0) >= 7)
    host, _, pid = wenv.job_worker(job["id"]).rpartition(":")
    os.kill(int(pid), signal.SIGKILL)
    done = wenv.wait_done(job["id"], timeout=150)
    assert done["state"] == "succeeded", (done, wenv.worker_log())
    assert done["attempts"] == 2 and done["progress"]["attempt"] == 2
    assert done["progress"]["resumed_from"] >= 6 and done["progress"]["resumed_from"] % 2 == 0
    resumes = [e for e in log_events(wenv, job["id"]) if e["event"] == "resume"]
    assert len(resumes) == 1 and resumes[0]["from_step"] == done["progress"]["resumed_from"]
    assert done["result"]["promoted"] is True and j["progress"]["step"] >= 7


def test_kill9_whole_worker_then_restart_recovers(wenv: WorkerEnv) -> None:
    """Worker and pool child die together (the filesystem broker loses the delivered message): the job
    is never left "running"; the next worker re-queues it and it resumes from its checkpoint."""
    p, _ = wenv.project("two_classes")
    job = wenv.submit(p["id"], steps=40, promote="always")
    wenv.wait(job["id"], lambda j: j["state"] == "running" and (j["progress"]["step"] or 0) >= 5)
    wenv.kill_worker(wenv.procs[-1])
    # with no worker alive, reading the job notices the dead process and re-queues it
    j = wenv.wait(job["id"], lambda j: j["state"] == "queued", timeout=30)
    assert "re-queued" in j["progress"]["message"]
    wenv.start_worker()
    done = wenv.wait_done(job["id"], timeout=150)
    assert done["state"] == "succeeded" and done["attempts"] == 2, (done, wenv.worker_log())
    assert done["progress"]["resumed_from"] >= 4
    # the registry is consistent: the new version's files exist and load
    v = wenv.client.get(f"/projects/{p['id']}/models/{done['result_version']}").json()
    assert v["variant"] == "b0" and v["active"] is True


def test_bad_inputs_fail_fast(wenv: WorkerEnv) -> None:
    p, image_id = wenv.project("none")
    t0 = time.monotonic()
    r = wenv.client.post(f"/projects/{p['id']}/jobs", json={"steps": 5})
    assert r.status_code == 409 and "no labelled images" in r.json()["detail"]
    p2, _ = wenv.project("two_classes")
    r = wenv.client.post(f"/projects/{p2['id']}/jobs", json={"base_version": 42})
    assert r.status_code == 422 and "base_version 42 does not exist" in r.json()["detail"]
    r = wenv.client.post(f"/projects/{p2['id']}/jobs", json={"images": [image_id]})
    assert r.status_code == 422 and "not in project" in r.json()["detail"]
    r = wenv.client.post(f"/projects/{p2['id']}/jobs", json={"base_version": 1, "scratch": True})
    assert r.status_code == 422 and "at most one of" in json.dumps(r.json()["detail"])
    assert time.monotonic() - t0 < 5
    # a base version whose files vanished after the job was accepted: the worker fails it with the reason
    shutil.rmtree(wenv.home / "models" / str(p2["id"]) / "v1")
    job = wenv.submit(p2["id"], base_version=1)
    done = wenv.wait_done(job["id"], timeout=60)
    assert done["state"] == "failed" and "base model version 1 is unusable" in done["error"], done
    assert done["finished_at"] and done["result_version"] is None
