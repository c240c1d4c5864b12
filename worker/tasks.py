"""The Celery task. Thin on purpose: the job logic is ``worker.finetune.run_job`` (testable without
a broker); this module binds it to the app of ``worker.celery_app`` under ``jobs.queue.TASK_NAME``,
the name the API publishes to (``jobs.queue.submit``)."""

from __future__ import annotations

from typing import Any

from celery import Task

from jobs.queue import TASK_NAME

from .celery_app import app, settings
from .finetune import run_job

__all__ = ["fine_tune"]


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def fine_tune(self: Task, job_id: int) -> dict[str, Any]:
    """Fine-tune job ``job_id`` (parameters, labels and cancel flag are read from the database)."""
    return run_job(int(job_id), settings, task_id=self.request.id)
