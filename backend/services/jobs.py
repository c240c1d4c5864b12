"""The API's side of fine-tune jobs: validate a request, record the job, hand it to the broker,
cancel it, and recover a lost one when a client reads it.

The state machine itself is ``jobs.lifecycle`` (shared with the worker); the broker client is
``jobs.queue``. The API never imports the worker: it publishes by task name.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope, utcnow
from core.errors import ErrorCode, ServiceError, not_found
from core.orm import AnnotationRevision, Image, Job, ModelVersion, Project
from core.settings import Settings
from jobs import lifecycle
from jobs.queue import JobQueue
from jobs.schemas import TERMINAL_STATES, JobCreate, JobProgress, JobResult

from ..schemas.jobs import JobPublic
from .annotations import AnnotationService
from .registry import ModelRegistry

log = logging.getLogger("sasformer.jobs")


class JobService:
    def __init__(self, settings: Settings, queue: JobQueue, registry: ModelRegistry,
                 annotations: AnnotationService, sessions: sessionmaker[Session] | None = None) -> None:
        self.settings = settings
        self.queue = queue
        self.registry = registry
        self.annotations = annotations
        self.sessions = sessions
        if sessions is not None and settings.auto_train_after_saves > 0:
            annotations.on_saved.append(self.train_on_save)

    def train_on_save(self, project_id: int, image_id: int) -> Job | None:
        """After a committed save: queue a job when ``auto_train`` says so, in its own transaction."""
        assert self.sessions is not None
        with session_scope(self.sessions) as s:
            project = s.get(Project, project_id)
            job = self.auto_train(s, project) if project is not None else None
            if job is None:
                return None
            s.commit()  # the worker must find the row when it picks the task up
            self.dispatch(s, job)
            log.info("project %s: auto-train job %s queued after image %s was saved", project_id, job.id, image_id)
            return job

    # ---- what the API answers -------------------------------------------------------------------
    def public(self, session: Session, job: Job) -> JobPublic:
        note = self.queue.available() if job.state == "queued" and job.task_id is None else None
        return JobPublic(
            id=job.id, project_id=job.project_id, kind=job.kind, state=job.state,  # type: ignore[arg-type]
            params=JobCreate.model_validate(job.params), base_version=self.version_number(session, job.base_version_id),
            result_version=self.version_number(session, job.result_version_id),
            progress=JobProgress.model_validate(job.progress or {}), error=job.error,
            cancel_requested=job.cancel_requested, attempts=job.attempts or 0,
            result=JobResult.model_validate(job.result) if job.result else None, author=job.author,
            created_at=job.created_at, started_at=job.started_at, finished_at=job.finished_at,
            updated_at=job.updated_at, note=note)

    def start(self, session: Session, project: Project, params: JobCreate, author: str) -> Job:
        """Validate, record (committed: the worker must find the row when it picks the task up), hand to the
        broker and record the task id."""
        job = self.create(session, project, params, author)
        session.commit()
        self.dispatch(session, job)
        session.commit()
        return job

    def read(self, session: Session, job_id: int) -> Job:
        """A job as it is now: a running job whose worker is gone is recovered first."""
        job = self.get(session, job_id)
        self.recover(session, job)
        return job

    def page(self, session: Session, project_id: int, state: str | None, offset: int, limit: int
             ) -> tuple[list[Job], int]:
        rows, total = self.list(session, project_id, state, offset, limit)
        for job in rows:
            self.recover(session, job)
        return rows, total

    def snapshot(self, sessions: sessionmaker[Session], job_id: int) -> tuple[str, bool]:
        """The job as JSON in its own short transaction, and whether it has ended (the event stream's poll)."""
        with session_scope(sessions) as s:
            job = self.read(s, job_id)
            return self.public(s, job).model_dump_json(), job.state in TERMINAL_STATES

    def log_path(self, session: Session, job_id: int) -> Path:
        self.get(session, job_id)
        path = self.settings.jobs_dir / str(job_id) / "log.jsonl"
        if not path.is_file():
            raise ServiceError(ErrorCode.NOT_FOUND, f"job {job_id} has no log yet (it has not started)")
        return path

    # ---- the job table ---------------------------------------------------------------------------
    def get(self, session: Session, job_id: int) -> Job:
        job = session.get(Job, job_id)
        if job is None:
            raise not_found("job", job_id)
        return job

    def list(self, session: Session, project_id: int, state: str | None, offset: int, limit: int
             ) -> tuple[list[Job], int]:
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

    def auto_train(self, session: Session, project: Project) -> Job | None:
        """Train-on-submit (MONAI Label's idea, without its restart on every label): after
        ``auto_train_after_saves`` saves since the project's last job, queue one with the default
        recipe, unless a job is queued or running (the saves are picked up by the next job then).

        Returns the new job (the caller commits, then dispatches) or None.
        """
        n = self.settings.auto_train_after_saves
        if n <= 0:
            return None
        busy = session.scalar(select(Job.id).where(Job.project_id == project.id,
                                                   Job.state.in_(("queued", "running"))).limit(1))
        if busy is not None:
            return None
        last = session.scalar(select(func.max(Job.created_at)).where(Job.project_id == project.id))
        saves = select(func.count()).select_from(AnnotationRevision).join(Image).where(Image.project_id == project.id)
        if last is not None:
            saves = saves.where(AnnotationRevision.created_at > last)
        if int(session.scalar(saves) or 0) < n:
            return None
        try:
            return self.create(session, project, JobCreate(), author="auto-train")
        except ServiceError as e:  # e.g. every label erased again: nothing to train on, not an error of the save
            log.info("auto-train of project %s skipped: %s", project.id, e.detail)
            return None

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
        """Cancel; True when the job is cancelled now, False when a running job was asked to stop."""
        if job.state in TERMINAL_STATES:
            raise ServiceError(ErrorCode.CONFLICT, f"job {job.id} already {job.state}")
        cancelled = lifecycle.request_cancel(session, job)
        try:
            self.queue.cancel(job.id, job.task_id)  # revoke: a queued message is dropped by the worker
        except Exception:  # the flag in the row is the cooperative signal; a failed revoke is not fatal
            log.exception("revoking job %s failed", job.id)
        return cancelled

    def recover(self, session: Session, job: Job) -> str | None:
        """The API's share of crash recovery: a running job whose worker is gone is re-queued or failed
        on read, so a client never watches a dead job as "running" (the worker's sweeper does the same)."""
        if job.state != "running" or lifecycle.lost_reason(job, self.settings) is None:
            return None
        action = lifecycle.recover_lost(session, job, self.settings, self.queue.submit)
        session.flush()
        return action

    def version_number(self, session: Session, version_id: int | None) -> int | None:
        if version_id is None:
            return None
        v = session.get(ModelVersion, version_id)
        return v.number if v is not None else None
