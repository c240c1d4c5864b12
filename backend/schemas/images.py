"""Image metadata as stored in the database (the pixels stay on disk, content-addressed)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class ImagePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    filename: str
    sha256: str
    format: str
    mode: str
    width: int
    height: int
    size_bytes: int
    created_at: datetime
    annotation_revision: int | None = None
