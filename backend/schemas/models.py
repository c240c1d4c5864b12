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


class SeedFilePublic(BaseModel):
    """A checkpoint in the server's ``pretrained_dir`` that ``POST /projects`` and jobs may name."""

    name: str = Field(description="the file name to pass as `pretrained`")
    bytes: int
    layout: str | None = Field(description="sasformer (a bundle trained with this tool: encoder and head), nvlabs "
                                           "or hf (ImageNet encoder weights); null when only loading would tell")
    num_classes: int | None = Field(description="classes of the decode head it carries; a project with another "
                                                "number of classes gets the encoder only and a fresh head")
    default: bool = Field(description="what a project that names no checkpoint starts from")
    error: str | None = Field(description="why the file's header could not be read")
