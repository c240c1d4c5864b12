"""The Celery task. Thin on purpose: the job logic is ``worker.finetune.run_job`` (testable without
a broker); this module binds it to the app with the long-job settings of ``worker.celery_app``.

``submit``/``cancel`` (what the API calls) live in ``worker.client`` and are re-exported here.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from .celery_app import TASK_NAME, app, settings
from .client import cancel, submit
from .finetune import run_job

__all__ = ["cancel", "fine_tune", "submit"]


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
def fine_tune(self: Task, job_id: int) -> dict[str, Any]:
    """Fine-tune job ``job_id`` (parameters, labels and cancel flag are read from the database)."""
    return run_job(int(job_id), settings, task_id=self.request.id)
