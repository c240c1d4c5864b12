"""The Celery app of the fine-tune worker, configured from the one settings object.

Broker: the embedded default is Celery's ``filesystem://`` transport under ``<data>/broker`` (no
server; the control folder makes ``revoke``/``inspect`` work); Redis when ``REDIS_URL`` or
``CELERY_BROKER_URL`` is set. Results: a file backend under ``<data>/jobs/results`` (or Redis); the
jobs table, not the result backend, is what the API reads.

Settings for long GPU jobs, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a job is acknowledged when it ends, so a
  worker process killed mid-job puts it back on the queue; it resumes from its checkpoint.
* ``worker_prefetch_multiplier=1``, concurrency 1: one job per GPU at a time, nothing reserved that
  another worker could run. CUDA is only touched in the pool child (never in the prefork parent);
  the child gives its cached GPU memory back after every job (``run_job``). No
  ``worker_max_tasks_per_child``: with the Redis transport, replacing the child after each job
  sometimes left the next delivered job unexecuted ("received", never started: reproduced in 1 of 3
  runs of tests/worker on Redis, 2026-11-25; never once without it).
* one queue per resource (``gpu``, ``cpu``): a worker consumes the queue of what it has.
* no event loop (``SyncLoopCelery``): on Redis, Celery's default event-loop consumer drives the prefork
  pool asynchronously, and when a pool process was replaced (killed mid-job, or recycled after each
  job by ``worker_max_tasks_per_child``) the worker sometimes kept receiving jobs but never ran them
  again (reproduced in tests/worker under load, 2026-11-25). The synchronous consumer with the
  threaded pool supervisor - what Celery uses for the filesystem broker, never seen to hang - costs
  nothing that matters for jobs of minutes.
* ``visibility_timeout`` (Redis) above the longest job: a running job is not handed out twice;
  soft/hard time limits: a job that never ends is stopped (gracefully, then by force).

Start a worker with ``celery -A worker.celery_app worker`` (``scripts/serve.sh`` does it for you).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

from celery import Celery, signals
from celery.apps.worker import Worker
from kombu import Queue

from backend.settings import Settings

log = logging.getLogger("sasformer.worker")

TASK_NAME = "worker.tasks.fine_tune"
_apps: dict[tuple[Any, ...], Celery] = {}
_apps_lock = threading.Lock()


class SyncLoopWorker(Worker):
    """A worker that never uses the asynchronous event loop (see the module docstring for why)."""

    def should_use_eventloop(self) -> bool:
        return False


class SyncLoopCelery(Celery):
    """``celery -A worker.celery_app worker`` starts a ``SyncLoopWorker`` for this app."""

    @cached_property
    def Worker(self) -> type[Worker]:  # noqa: N802 - Celery's name
        return self.subclass_with_self(SyncLoopWorker)


def make_app(settings: Settings) -> Celery:
    """A Celery app for these settings (broker, result backend, worker behaviour)."""
    app = SyncLoopCelery("sasformer", broker=settings.broker_url, backend=settings.result_backend)
    queues = settings.resolved_worker_queues()
    app.conf.update(
        broker_transport_options=settings.broker_transport_options,
        broker_connection_retry_on_startup=True,
        task_serializer="json", result_serializer="json", accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,  # a job that failed is failed (recorded in the DB), not retried
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        task_queues=[Queue(q, routing_key=q) for q in queues],
        task_default_queue=settings.resolved_job_queue(),
        task_create_missing_queues=True,
        task_soft_time_limit=settings.job_soft_time_limit_s,
        task_time_limit=settings.job_hard_time_limit_s,
        task_track_started=True,
        result_expires=7 * 24 * 3600,
        worker_redirect_stdouts=False,
        imports=["worker.tasks"],
    )
    return app


def app_for(settings: Settings) -> Celery:
    """One app per broker configuration, for clients (the API) that hold several settings objects."""
    key = (settings.broker_url, settings.result_backend, tuple(sorted(settings.broker_transport_options.items())),
           settings.resolved_job_queue())
    with _apps_lock:
        if key not in _apps:
            _apps[key] = make_app(settings)
        return _apps[key]


settings = Settings()
app = app_for(settings)


# ---- worker lifecycle ------------------------------------------------------------------------------
@signals.worker_init.connect
def _on_worker_init(**_: Any) -> None:
    """Before the pool forks: data folders and the database schema exist even if the API never ran."""
    from backend.db import make_engine, migrate

    settings.ensure_dirs()
    engine = make_engine(settings)
    try:
        migrate(engine)
    finally:
        engine.dispose()  # no open connection may cross the fork into the pool's children
    log.info("worker: broker %s, queues %s", settings.broker_url.split("@")[-1], settings.resolved_worker_queues())


class Sweeper(threading.Thread):
    """Recovers jobs whose worker died (re-queue to resume from the checkpoint, or fail with the reason).

    Runs in the worker's main process: at start (a restarted worker picks up what its predecessor
    left "running", which the filesystem broker cannot re-deliver) and every ``job_sweep_interval_s``.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(name="sasformer-sweeper", daemon=True)
        self.settings = settings
        self.stop = threading.Event()

    def sweep_once(self) -> dict[int, str]:
        from backend.db import make_engine, make_sessionmaker, session_scope
        from backend.services.jobs import sweep_lost_jobs

        from .client import submit

        engine = make_engine(self.settings)
        try:
            with session_scope(make_sessionmaker(engine)) as s:
                return sweep_lost_jobs(s, self.settings,
                                       lambda job_id, project_id, params: submit(job_id, project_id, params,
                                                                                 self.settings))
        finally:
            engine.dispose()

    def run(self) -> None:
        while True:
            try:
                done = self.sweep_once()
                if done:
                    log.warning("sweeper recovered lost jobs: %s", done)
            except Exception:
                log.exception("sweeping lost jobs failed")
            if self.stop.wait(self.settings.job_sweep_interval_s):
                return


_sweeper: Sweeper | None = None


@signals.worker_ready.connect
def _on_worker_ready(**_: Any) -> None:
    global _sweeper
    _sweeper = Sweeper(settings)
    _sweeper.start()


@signals.worker_shutdown.connect
def _on_worker_shutdown(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop.set()
