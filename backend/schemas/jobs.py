"""Fine-tune job schemas, shared with the worker: what a client submits and the progress it reads."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


class JobCreate(BaseModel):
    """Fine-tune the project's model on its sparse labels (paper's pCE + affinity loss)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["fine_tune"] = "fine_tune"
    base_version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                     description="model version to start from; default active")
    steps: int = Field(default=500, ge=1, le=200_000)
    batch_size: int = Field(default=4, ge=1, le=64)
    lr: float = Field(default=6e-5, gt=0, le=1)
    crop_size: int = Field(default=512, ge=64, le=2048)
    annotation: Literal["scribbles", "points"] = Field(
        default="scribbles", description="sets the affinity weight alpha as in the paper (1.2 / 0.2)")
    alpha: float | None = Field(default=None, ge=0, le=10, description="overrides the paper's alpha")
    val_fraction: float = Field(default=0.2, ge=0, le=0.5, description="labelled images held out for metrics")
    promote: Literal["never", "if_better", "always"] = "if_better"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class JobProgress(BaseModel):
    """What the worker reports while training; every field is optional until the first step."""

    step: int | None = None
    total: int | None = None
    loss: dict[str, float] = Field(default_factory=dict, description="loss terms, e.g. {'pce':..,'affinity':..}")
    lr: float | None = None
    throughput: float | None = Field(default=None, description="images per second")
    eta_s: float | None = Field(default=None, description="estimated seconds left")
    metric: dict[str, float] = Field(default_factory=dict, description="latest validation metrics, e.g. {'miou':..}")
    message: str | None = None


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
    author: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    note: str | None = Field(default=None, description="why a job is still queued, when known")
