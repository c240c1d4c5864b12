"""The state machine of the ``jobs`` table: claim, heartbeat, progress, finish, and lost-job recovery.

Both sides use it: the worker claims, beats, reports and finishes; the API cancels and recovers on
read; the worker's sweeper recovers in the background. All writes are conditional UPDATEs on the row,
so the API and any number of workers can race on one job without a lock server.

Delivery is at-least-once (Celery ``acks_late``; the sweeper re-queues lost jobs), so ``claim`` is
what makes a job run once at a time: a delivery only starts a job that is queued, or running in a
process that is provably gone (dead pid on this host, or no heartbeat for ``job_stale_after_s``).

States: ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled``; a lost ``running``
job goes back to ``queued`` (resumes from its checkpoint) until ``job_max_attempts``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.db import utcnow
from core.errors import not_found
from core.orm import Job
from core.settings import Settings

from .schemas import TERMINAL_STATES, JobProgress

log = logging.getLogger("sasformer.jobs")

Submit = Callable[[int, int, dict[str, Any]], str | None]
"""Hands a job (id, project id, params) to the broker; returns the task id."""


def _rowcount(result: Any) -> int:
    """Rows matched by an UPDATE (``CursorResult.rowcount``; typed loosely by SQLAlchemy)."""
    return int(result.rowcount)


def worker_id() -> str:
    """``host:pid`` of this process: lets a sweeper on the same host tell a dead worker at once."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_gone(worker: str | None) -> bool:
    """True only when ``worker`` names a process on this host that no longer exists."""
    if not worker or ":" not in worker:
        return False
    host, _, pid = worker.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    # a zombie (killed, not yet reaped by its parent) still answers signal 0
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _aware(t: datetime | None) -> datetime | None:
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def lost_reason(job: Job, settings: Settings, now: datetime | None = None) -> str | None:
    """Why a ``running`` job counts as lost (its process is gone or silent), or None while it is alive."""
    if job.state != "running":
        return None
    if _pid_gone(job.worker):
        return f"worker process {job.worker} died"
    now = now or utcnow()
    last = _aware(job.heartbeat_at) or _aware(job.started_at)
    if last is not None and now - last > timedelta(seconds=settings.job_stale_after_s):
        return f"no heartbeat from {job.worker or 'its worker'} for {(now - last).total_seconds():.0f} s"
    return None


@dataclass
class Claim:
    """Outcome of a delivery: ``run`` (with ``resume`` when an earlier attempt left a checkpoint
    behind) or skip with the reason (already finished, cancelled, running elsewhere, out of attempts)."""

    run: bool
    reason: str = ""
    attempt: int = 0
    resume: bool = False


def claim(session: Session, job_id: int, settings: Settings, task_id: str | None = None,
          me: str | None = None) -> Claim:
    """Take a delivered job for this process, atomically (optimistic UPDATE on state/worker/attempts).

    Re-deliveries are expected (acks_late, Redis visibility timeout, the sweeper), so this is where a
    job is kept from running twice: only a queued job, or a running one whose worker is lost, is taken.
    """
    me = me or worker_id()
    job = session.get(Job, job_id)
    if job is None:
        return Claim(False, f"job {job_id} does not exist (deleted with its project?)")
    session.refresh(job)
    if job.state in TERMINAL_STATES:
        return Claim(False, f"job {job_id} is already {job.state}")
    if job.cancel_requested:
        finish(session, job_id, "cancelled", error=None)
        return Claim(False, f"job {job_id} was cancelled before it started")
    if job.state == "running":
        why = lost_reason(job, settings)
        if why is None:
            return Claim(False, f"job {job_id} is running in {job.worker}")
        log.warning("job %s: taking over from a lost attempt (%s)", job_id, why)
    if job.attempts >= settings.job_max_attempts:
        finish(session, job_id, "failed", error=f"gave up after {job.attempts} attempts: the worker was lost each "
                                                 "time (killed, out of memory or past the hard time limit?)")
        return Claim(False, f"job {job_id} is out of attempts")
    now = utcnow()
    taken = _rowcount(session.execute(
        update(Job).where(Job.id == job_id, Job.state == job.state, Job.attempts == job.attempts,
                          func.coalesce(Job.worker, "") == (job.worker or ""))
        .values(state="running", attempts=job.attempts + 1, worker=me, heartbeat_at=now,
                started_at=func.coalesce(Job.started_at, now), task_id=task_id or Job.task_id, updated_at=now)
        .execution_options(synchronize_session=False)))
    session.flush()
    if not taken:
        return Claim(False, f"job {job_id} was taken by another delivery")
    session.refresh(job)
    return Claim(True, attempt=job.attempts, resume=job.attempts > 1)


def heartbeat(session: Session, job_id: int, me: str) -> bool:
    """Refresh the heartbeat of a job this process runs; returns the cancel flag."""
    session.execute(update(Job).where(Job.id == job_id, Job.worker == me, Job.state == "running")
                    .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
    flag = session.scalar(select(Job.cancel_requested).where(Job.id == job_id))
    return bool(flag)


def mark_running(session: Session, job_id: int, task_id: str | None = None) -> Job:
    """Unconditionally mark a job running (tests and tools; the worker uses ``claim``)."""
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    job.state, job.started_at, job.heartbeat_at = "running", utcnow(), utcnow()
    if task_id:
        job.task_id = task_id
    return job


def record_progress(session: Session, job_id: int, progress: JobProgress) -> bool:
    """Store the latest progress; returns whether cancellation was requested (the cooperative flag)."""
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    job.progress = progress.model_dump()
    job.heartbeat_at = utcnow()
    return job.cancel_requested


def finish(session: Session, job_id: int, state: str, *, error: str | None = None,
           result_version_id: int | None = None, result: dict[str, Any] | None = None) -> Job:
    if state not in TERMINAL_STATES:
        raise ValueError(f"finish() needs a terminal state {TERMINAL_STATES}, got {state!r}")
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    job.state, job.error, job.finished_at = state, error, utcnow()
    job.result_version_id = result_version_id
    if result is not None:
        job.result = result
    return job


def recover_lost(session: Session, job: Job, settings: Settings,
                 submit: Submit) -> str:
    """Re-queue a lost running job (it resumes from its checkpoint) or fail it with the reason.

    Returns what was done. The job row is updated before the resubmission, and the claim at task
    start ignores any duplicate delivery (e.g. Redis restoring the same unacknowledged message).
    """
    why = lost_reason(job, settings) or "worker lost"
    if job.cancel_requested:
        finish(session, job.id, "cancelled", error=None)
        return "cancelled"
    if job.attempts >= settings.job_max_attempts:
        finish(session, job.id, "failed", error=f"{why} on attempt {job.attempts} of {settings.job_max_attempts}; "
                                                "the last checkpoint is kept in the job folder")
        return "failed"
    job.state, job.worker = "queued", None
    job.progress = {**(job.progress or {}), "message": f"{why}; re-queued to resume from the last checkpoint"}
    # Commit before publishing: a broker call inside the transaction would hold SQLite's write lock for
    # as long as the broker takes, and the worker claiming the re-delivered job waits on that lock.
    session.commit()
    try:
        task_id = submit(job.id, job.project_id, dict(job.params))
    except Exception as e:  # broker down: the job cannot come back by itself
        finish(session, job.id, "failed", error=f"{why}; re-queueing failed: {e}")
        return "failed"
    if task_id is not None:
        job.task_id = task_id
    return "requeued"


def sweep_lost_jobs(session: Session, settings: Settings,
                    submit: Submit) -> dict[int, str]:
    """Recover every lost running job (the worker runs this at start and every ``job_sweep_interval_s``)."""
    done: dict[int, str] = {}
    for job in session.scalars(select(Job).where(Job.state == "running")).all():  # recover_lost commits
        if lost_reason(job, settings) is not None:
            done[job.id] = recover_lost(session, job, settings, submit)
            log.warning("job %s lost: %s", job.id, done[job.id])
    return done


def request_cancel(session: Session, job: Job) -> bool:
    """Cancel a job; True when it is cancelled now, False when a running job was asked to stop.

    A queued job is flipped with a conditional UPDATE, so a worker claiming it at the same moment
    either wins (the job is running and sees the flag within a step) or finds it cancelled.
    """
    now = utcnow()
    flipped = _rowcount(session.execute(
        update(Job).where(Job.id == job.id, Job.state == "queued")
        .values(state="cancelled", cancel_requested=True, finished_at=now, updated_at=now)
        .execution_options(synchronize_session=False)))
    if not flipped:
        session.execute(update(Job).where(Job.id == job.id).values(cancel_requested=True, updated_at=now)
                        .execution_options(synchronize_session=False))
    session.flush()
    session.refresh(job)
    return job.state == "cancelled"
