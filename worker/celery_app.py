"""The fine-tune worker's Celery app: ``jobs.queue``'s configuration, a consumer without the event loop,
the data folders and schema at start, and the lost-job sweeper.

Why no event loop (``SyncLoopCelery``): on Redis, Celery's default event-loop consumer drives the
prefork pool asynchronously, and when a pool process was replaced (killed mid-job, or recycled after
each job by ``worker_max_tasks_per_child``) the worker sometimes kept receiving jobs but never ran them
again (reproduced in tests/worker under load, 2026-11-25). The synchronous consumer with the threaded
pool supervisor - what Celery uses for the filesystem broker, never seen to hang - costs nothing that
matters for jobs of minutes. No ``worker_max_tasks_per_child`` either: with the Redis transport,
replacing the child after each job sometimes left the next delivered job unexecuted. CUDA is only
touched in the pool child (never in the prefork parent); the child gives its cached GPU memory back
after every job (``run_job``).

Start a worker with ``celery -A worker.celery_app worker`` (``scripts/serve.sh`` does it for you).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from typing import Any

from celery import Celery, signals
from celery.apps.worker import Worker

from core.db import make_engine, make_sessionmaker, migrate, session_scope
from core.settings import Settings
from jobs.lifecycle import sweep_lost_jobs
from jobs.queue import make_app, submit

log = logging.getLogger("sasformer.worker")


class SyncLoopWorker(Worker):
    """A worker that never uses the asynchronous event loop (see the module docstring for why)."""

    def should_use_eventloop(self) -> bool:
        return False


class SyncLoopCelery(Celery):
    """``celery -A worker.celery_app worker`` starts a ``SyncLoopWorker`` for this app."""

    @cached_property
    def Worker(self) -> type[Worker]:  # noqa: N802 - Celery's name
        return self.subclass_with_self(SyncLoopWorker)


settings = Settings()
app = make_app(settings, SyncLoopCelery)
app.conf.imports = ["worker.tasks"]


# ---- worker lifecycle ------------------------------------------------------------------------------
@signals.worker_init.connect
def _on_worker_init(**_: Any) -> None:
    """Before the pool forks: data folders and the database schema exist even if the API never ran."""
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
