"""Jobs facade: validation, the job record, and a small queue interface the worker plugs into.

The API owns the ``jobs`` table; execution belongs to the worker package. ``JobQueue`` is all the
API needs from it. ``WorkerJobQueue`` finds the worker's functions lazily, in ``worker.client`` or
``worker.tasks``::

    def submit(job_id: int, project_id: int, params: dict, settings: Settings) -> str   # task id
    def cancel(job_id: int, task_id: str | None, settings: Settings) -> None            # optional

Until the worker package provides ``submit``, a job stays ``queued`` (nothing fakes progress) and
``JobPublic.note`` says why. The worker reports through ``mark_running`` / ``record_progress`` /
``finish`` below, which write the same rows the API reads, so the SSE stream needs nothing else.
"""

from __future__ import annotations

import importlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import utcnow
from ..errors import ErrorCode, ServiceError, not_found
from ..orm import Job, ModelVersion, Project
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
            for d in settings.broker_transport_options.values():
                from pathlib import Path

                Path(d).mkdir(parents=True, exist_ok=True)
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
        """Validate and record a job in state ``queued``; the caller commits, then calls ``dispatch``."""
        if self.annotations.labeled_image_count(session, project.id) == 0:
            raise ServiceError(ErrorCode.CONFLICT, f"project {project.id} has no labelled images; annotate at least "
                                                   "one image (PUT /images/{id}/annotation) before fine-tuning")
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
        """Cancel; returns True when the job is cancelled now, False when a running job was asked to stop."""
        if job.state in TERMINAL_STATES:
            raise ServiceError(ErrorCode.CONFLICT, f"job {job.id} already {job.state}")
        job.cancel_requested = True
        if job.state == "queued":
            job.state, job.finished_at = "cancelled", utcnow()
        try:
            self.queue.cancel(job.id, job.task_id)
        except Exception:  # the flag in the row is the cooperative signal; a failed revoke is not fatal
            log.exception("revoking job %s failed", job.id)
        return job.state == "cancelled"

    def version_number(self, session: Session, version_id: int | None) -> int | None:
        if version_id is None:
            return None
        v = session.get(ModelVersion, version_id)
        return v.number if v is not None else None


# ---- the worker's side of the table (called from worker tasks with their own session) -------------
def mark_running(session: Session, job_id: int, task_id: str | None = None) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    job.state, job.started_at = "running", utcnow()
    if task_id:
        job.task_id = task_id
    return job


def record_progress(session: Session, job_id: int, progress: JobProgress) -> bool:
    """Store the latest progress; returns whether cancellation was requested (the cooperative flag)."""
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    job.progress = progress.model_dump()
    return job.cancel_requested


def finish(session: Session, job_id: int, state: str, *, error: str | None = None,
           result_version_id: int | None = None) -> Job:
    if state not in TERMINAL_STATES:
        raise ValueError(f"finish() needs a terminal state {TERMINAL_STATES}, got {state!r}")
    job = session.get(Job, job_id)
    if job is None:
        raise not_found("job", job_id)
    job.state, job.error, job.finished_at = state, error, utcnow()
    job.result_version_id = result_version_id
    return job
