"""The broker side of jobs: the Celery app configuration (one per broker), and handing a job to it.

The API publishes by task *name* (``send_task``), so it never imports the worker's code; the worker
builds its app from the same ``make_app`` (with its own app class) and registers the task under
``TASK_NAME``. Only the job id travels: the worker reads parameters, labels and the cancel flag from
the database, so a re-delivered or re-queued message always runs the job as it is now recorded.

Broker: the embedded default is Celery's ``filesystem://`` transport under ``<data>/broker`` (no
server; the control folder makes ``revoke``/``inspect`` work); Redis when ``REDIS_URL`` or
``CELERY_BROKER_URL`` is set. Results: a file backend under ``<data>/jobs/results`` (or Redis); the
jobs table, not the result backend, is what the API reads.

Settings for long GPU jobs, and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a job is acknowledged when it ends, so a
  worker process killed mid-job puts it back on the queue; it resumes from its checkpoint.
* ``worker_prefetch_multiplier=1``, concurrency 1: one job per GPU at a time, nothing reserved that
  another worker could run.
* one queue per resource (``gpu``, ``cpu``): a worker consumes the queue of what it has.
* ``visibility_timeout`` (Redis) above the longest job: a running job is not handed out twice;
  soft/hard time limits: a job that never ends is stopped (gracefully, then by force).
"""

from __future__ import annotations

import socket
import threading
from typing import Any, Protocol
from urllib.parse import urlparse

from celery import Celery
from kombu import Queue

from core.settings import Settings

TASK_NAME = "worker.tasks.fine_tune"
_apps: dict[tuple[Any, ...], Celery] = {}
_apps_lock = threading.Lock()


def make_app(settings: Settings, app_class: type[Celery] = Celery) -> Celery:
    """A Celery app for these settings (broker, result backend, worker behaviour)."""
    app = app_class("sasformer", broker=settings.broker_url, backend=settings.result_backend)
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
    )
    return app


def app_for(settings: Settings) -> Celery:
    """One publishing app per broker configuration (the API and tests hold several settings objects)."""
    key = (settings.broker_url, settings.result_backend, tuple(sorted(settings.broker_transport_options.items())),
           settings.resolved_job_queue())
    with _apps_lock:
        if key not in _apps:
            _apps[key] = make_app(settings)
        return _apps[key]


def submit(job_id: int, project_id: int, params: dict[str, Any], settings: Settings) -> str:
    """Queue ``fine_tune(job_id)`` on the queue of the job's resource; returns the Celery task id."""
    queue = settings.resolved_job_queue()
    result = app_for(settings).send_task(TASK_NAME, args=[job_id], queue=queue, routing_key=queue,
                                         headers={"project_id": project_id})
    return str(result.id)


def revoke(task_id: str | None, settings: Settings) -> None:
    """Revoke the task so a worker drops the message unstarted (the start-of-task claim is the backstop;
    a running job stops through the cancel flag, which keeps its checkpoint)."""
    if task_id:
        app_for(settings).control.revoke(task_id)


class JobQueue(Protocol):
    """What the API needs from the broker (a test can pass a fake)."""

    def available(self) -> str | None:
        """None when jobs can be handed to a worker, else the reason they stay queued."""

    def submit(self, job_id: int, project_id: int, params: dict[str, Any]) -> str | None:
        """Hand the job over; returns the task id, or None when no worker is available."""

    def cancel(self, job_id: int, task_id: str | None) -> None: ...


class CeleryJobQueue:
    """``JobQueue`` on the configured broker."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def available(self) -> str | None:
        return None

    def submit(self, job_id: int, project_id: int, params: dict[str, Any]) -> str | None:
        return submit(job_id, project_id, params, self.settings)

    def cancel(self, job_id: int, task_id: str | None) -> None:
        revoke(task_id, self.settings)


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
