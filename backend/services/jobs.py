"""Jobs facade: validation, the job record, the worker's side of the table, and lost-job recovery.

The API owns the ``jobs`` table; execution belongs to the worker package. ``JobQueue`` is all the
API needs from it. ``WorkerJobQueue`` finds the worker's functions lazily, in ``worker.client`` or
``worker.tasks``::

    def submit(job_id: int, project_id: int, params: dict, settings: Settings) -> str   # task id
    def cancel(job_id: int, task_id: str | None, settings: Settings) -> None            # optional

Without a worker package a job stays ``queued`` (nothing fakes progress) and ``JobPublic.note`` says
why. The worker reports through ``claim`` / ``heartbeat`` / ``record_progress`` / ``finish`` below,
which write the same rows the API reads, so the SSE stream needs nothing else.

Delivery is at-least-once (Celery ``acks_late``; the sweeper re-queues lost jobs), so ``claim`` is
what makes a job run once at a time: a delivery only starts a job that is queued, or running in a
process that is provably gone (dead pid on this host, or no heartbeat for ``job_stale_after_s``).
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlparse

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..errors import ErrorCode, ServiceError, not_found
from ..orm import AnnotationRevision, Image, Job, ModelVersion, Project
from ..schemas.jobs import TERMINAL_STATES, JobCreate, JobProgress
from ..settings import Settings
from .annotations import AnnotationService
from .registry import ModelRegistry

log = logging.getLogger("sasformer.jobs")


class JobQueue(Protocol):
    def available(self) -> str | None:
        """None when jobs can be handed to a worker, else the reason they stay queued."""

    def submit(self, job_id: int, project_id: int, params: dict[str, Any]) -> str | None:
        """Hand the job over; returns the task id, or None when no worker is available."""

    def cancel(self, job_id: int, task_id: str | None) -> None: ...


class WorkerJobQueue:
    """Delegates to the worker package's ``submit``/``cancel`` once it exists."""

    MODULES = ("worker.client", "worker.tasks")

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _find(self, name: str) -> Callable[..., Any] | None:
        for mod_name in self.MODULES:
            try:
                mod = importlib.import_module(mod_name)
            except ModuleNotFoundError as e:
                if e.name is not None and mod_name.startswith(e.name):
                    continue  # the module itself is absent; any other missing import is a real error
                raise
            fn = getattr(mod, name, None)
            if callable(fn):
                return fn
        return None

    def available(self) -> str | None:
        if self._find("submit") is None:
            return "no worker is installed (worker.client/worker.tasks has no submit); the job stays queued"
        return None

    def submit(self, job_id: int, project_id: int, params: dict[str, Any]) -> str | None:
        fn = self._find("submit")
        if fn is None:
            return None
        return str(fn(job_id, project_id, params, self.settings))

    def cancel(self, job_id: int, task_id: str | None) -> None:
        fn = self._find("cancel")
        if fn is not None:
            fn(job_id, task_id, self.settings)


def broker_check(settings: Settings) -> tuple[bool, str]:
    """Is the broker reachable? Filesystem: its folders are writable; Redis/AMQP: a TCP connect (and PING)."""
    url = settings.broker_url
    if url.startswith("filesystem"):
        try:
            for d in settings.broker_folders:
                d.mkdir(parents=True, exist_ok=True)
            probe = settings.broker_dir / ".probe"
            probe.write_bytes(b"")
            probe.unlink()
            return True, f"filesystem broker at {settings.broker_dir}"
        except OSError as e:
            return False, f"filesystem broker folder not writable: {e}"
    parsed = urlparse(url)
    host = parsed.hostname or "localhost"
    port = parsed.port or {"redis": 6379, "rediss": 6379, "amqp": 5672}.get(parsed.scheme, 0)
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            if parsed.scheme == "redis":  # rediss is TLS: the connect is the check
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                if not reply.startswith((b"+PONG", b"-NOAUTH")):
                    return False, f"broker at {host}:{port} answered {reply[:32]!r} to PING"
        return True, f"{parsed.scheme} broker at {host}:{port}"
    except OSError as e:
        return False, f"broker at {host}:{port} unreachable: {e}"


class JobService:
    def __init__(self, settings: Settings, queue: JobQueue, registry: ModelRegistry,
                 annotations: AnnotationService) -> None:
        self.settings = settings
        self.queue = queue
        self.registry = registry
        self.annotations = annotations

    def get(self, session: Session, job_id: int) -> Job:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id)
        return job

    def list(self, session: Session, project_id: int, state: str | None, offset: int, limit: int
             ) -> tuple[list[Job], int]:
        from sqlalchemy import func

        q = select(Job).where(Job.project_id == project_id)
        if state is not None:
            q = q.where(Job.state == state)
        total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = list(session.scalars(q.order_by(Job.id.desc()).offset(offset).limit(limit)))
        return rows, int(total)

    def create(self, session: Session, project: Project, params: JobCreate, author: str) -> Job:
        """Validate and record a job in state ``queued``; the caller commits, then calls ``dispatch``.

        Everything a worker would trip over later is checked here, so bad input fails in the request
        (409/422 with the reason) instead of as a failed job minutes later.
        """
        if self.annotations.labeled_image_count(session, project.id) == 0:
            raise ServiceError(ErrorCode.CONFLICT, f"project {project.id} has no labelled images; annotate at least "
                                                   "one image (PUT /images/{id}/annotation) before fine-tuning")
        if params.images is not None:
            self._check_images(session, project, params.images)
        if params.pretrained is not None:
            self.registry.resolve_pretrained(params.pretrained)  # 422 naming the file when it is not there
        try:
            base = self.registry.resolve(session, project, params.base_version)
        except ServiceError as e:
            if e.code is ErrorCode.NOT_FOUND:
                raise ServiceError(ErrorCode.INVALID, f"base_version {params.base_version} does not exist in "
                                                      f"project {project.id}") from e
            raise
        job = Job(project_id=project.id, kind=params.kind, state="queued", params=params.model_dump(),
                  base_version_id=base.id, progress={}, author=author)
        session.add(job)
        session.flush()
        return job

    def _check_images(self, session: Session, project: Project, ids: Sequence[int]) -> None:
        wanted: set[int] = set(ids)
        found = set(session.scalars(select(Image.id).where(Image.project_id == project.id, Image.id.in_(wanted))))
        missing = sorted(wanted - found)
        if missing:
            raise ServiceError(ErrorCode.INVALID, f"images {missing[:10]} are not in project {project.id}")
        labelled: int | None = session.scalar(select(func.count(func.distinct(AnnotationRevision.image_id)))
                                              .where(AnnotationRevision.image_id.in_(wanted),
                                                     AnnotationRevision.labeled_pixels > 0))
        if not labelled:
            raise ServiceError(ErrorCode.CONFLICT, f"none of images {sorted(wanted)[:10]} has labelled pixels")

    def dispatch(self, session: Session, job: Job) -> None:
        """Hand a committed job to the worker; a failing hand-over marks the job failed with the reason."""
        try:
            task_id = self.queue.submit(job.id, job.project_id, dict(job.params))
        except Exception as e:  # broker down, worker bug: the client must see it on the job, not a 500
            log.exception("submitting job %s failed", job.id)
            job.state, job.error, job.finished_at = "failed", f"could not submit to the worker: {e}", utcnow()
            return
        if task_id is not None:
            job.task_id = task_id

    def cancel(self, session: Session, job: Job) -> bool:
        """Cancel; returns True when the job is cancelled now, False when a running job was asked to stop.

        A queued job is flipped with a conditional UPDATE, so a worker claiming it at the same moment
        either wins (the job is running and sees the flag within a step) or finds it cancelled.
        """
        if job.state in TERMINAL_STATES:
            raise ServiceError(ErrorCode.CONFLICT, f"job {job.id} already {job.state}")
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
        try:
            self.queue.cancel(job.id, job.task_id)  # revoke: a queued message is dropped by the worker
        except Exception:  # the flag in the row is the cooperative signal; a failed revoke is not fatal
            log.exception("revoking job %s failed", job.id)
        return job.state == "cancelled"

    def recover(self, session: Session, job: Job) -> str | None:
        """The API's share of crash recovery: a running job whose worker is gone is re-queued or failed
        on read, so a client never watches a dead job as "running" (the worker's sweeper does the same)."""
        if job.state != "running" or lost_reason(job, self.settings) is None:
            return None
        action = recover_lost(session, job, self.settings, self.queue.submit)
        session.flush()
        return action

    def version_number(self, session: Session, version_id: int | None) -> int | None:
        if version_id is None:
            return None
        v = session.get(ModelVersion, version_id)
        return v.number if v is not None else None


def _rowcount(result: Any) -> int:
    """Rows matched by an UPDATE (``CursorResult.rowcount``; typed loosely by SQLAlchemy)."""
    return int(result.rowcount)


# ---- the worker's side of the table (called from worker tasks with their own session) -------------
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
    from datetime import UTC

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
                 submit: Callable[[int, int, dict[str, Any]], str | None]) -> str:
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
                    submit: Callable[[int, int, dict[str, Any]], str | None]) -> dict[int, str]:
    """Recover every lost running job (the worker runs this at start and every ``job_sweep_interval_s``)."""
    done: dict[int, str] = {}
    for job in session.scalars(select(Job).where(Job.state == "running")).all():  # recover_lost commits
        if lost_reason(job, settings) is not None:
            done[job.id] = recover_lost(session, job, settings, submit)
            log.warning("job %s lost: %s", job.id, done[job.id])
    return done
