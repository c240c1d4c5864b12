"""The API's view of a fine-tune job; the shapes shared with the worker live in ``jobs.schemas``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from jobs.schemas import TERMINAL_STATES, JobCreate, JobProgress, JobResult, JobState

__all__ = ["TERMINAL_STATES", "JobCreate", "JobProgress", "JobPublic", "JobResult", "JobState"]


class JobPublic(BaseModel):
    id: int
    project_id: int
    kind: str
    state: JobState
    params: JobCreate
    base_version: int | None
    result_version: int | None
    progress: JobProgress
    error: str | None
    cancel_requested: bool
    attempts: int = 0
    result: JobResult | None = None
    author: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    note: str | None = Field(default=None, description="why a job is still queued, when known")
