"""Sparse labels: strokes (polylines), points and label PNGs; every save is a revision."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

UNLABELED = 255


class Stroke(BaseModel):
    """A polyline drawn with ``class_id`` (255 erases back to unlabeled) at ``width`` pixels."""

    class_id: int = Field(ge=0, le=255)
    width: int = Field(default=3, ge=1, le=256)
    points: list[tuple[float, float]] = Field(min_length=1, max_length=10_000,
                                              description="[[x, y], ...] in image pixel coordinates")


class Point(BaseModel):
    """A click: labels the disk of ``radius`` pixels (0 = one pixel) around (x, y)."""

    x: float
    y: float
    class_id: int = Field(ge=0, le=255)
    radius: int = Field(default=0, ge=0, le=128)


class AnnotationEdit(BaseModel):
    """PUT: the new label is these strokes/points on an empty label. PATCH: drawn over the current one."""

    strokes: list[Stroke] = Field(default_factory=list, max_length=5000)
    points: list[Point] = Field(default_factory=list, max_length=100_000)


class AnnotationPublic(BaseModel):
    image_id: int
    revision: int
    etag: str
    author: str
    kind: str
    created_at: datetime
    width: int
    height: int
    labeled_pixels: int
    class_counts: dict[str, int] = Field(description="labelled pixels per class name")
    strokes: list[Stroke]
    points: list[Point]


class RevisionPublic(BaseModel):
    revision: int
    author: str
    kind: str
    created_at: datetime
    labeled_pixels: int
    class_counts: dict[str, int]
