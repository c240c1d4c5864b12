"""What the API calls (``backend.services.jobs.WorkerJobQueue`` finds these): hand a job to the
broker, and revoke it. Light on purpose: no torch, no training code."""

from __future__ import annotations

from typing import Any

from backend.settings import Settings

from .celery_app import TASK_NAME, app_for


def submit(job_id: int, project_id: int, params: dict[str, Any], settings: Settings) -> str:
    """Queue ``fine_tune(job_id)`` on the queue of the job's resource; returns the Celery task id.

    Only the id travels: the worker reads parameters, labels and the cancel flag from the database,
    so a re-delivered or re-queued message always runs the job as it is now recorded.
    """
    queue = settings.resolved_job_queue()
    result = app_for(settings).send_task(TASK_NAME, args=[job_id], queue=queue, routing_key=queue,
                                         headers={"project_id": project_id})
    return str(result.id)


def cancel(job_id: int, task_id: str | None, settings: Settings) -> None:
    """Revoke the task so a worker drops the message unstarted (the start-of-task check is the backstop;
    a running job stops through the cancel flag, which keeps its checkpoint)."""
    if task_id:
        app_for(settings).control.revoke(task_id)
