"""Model versions of a project: provenance, metrics, whether it is served."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class ModelVersionPublic(BaseModel):
    project_id: int
    version: int
    active: bool
    variant: str
    path: str = Field(description="bundle directory relative to the data directory")
    parent_version: int | None
    job_id: int | None
    provenance: dict[str, Any]
    metrics: dict[str, Any]
    created_at: datetime
    loaded: bool = Field(description="whether a Predictor for it is in memory")


class ActivationPublic(BaseModel):
    version: int
    author: str
    reason: str
    rolled_back: bool
    created_at: datetime
