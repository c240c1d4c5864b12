"""Sparse labels: strokes (polylines), points and label PNGs; every save is a revision."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

# Numbers of a drawing are numbers: ``strict`` refuses JSON ``true``/``false`` and numeric strings (which lax
# parsing would read as 1/0 or numbers), as the schema's ``integer``/``number`` says; ints stay valid floats.
Coord = Annotated[float, Field(strict=True)]

UNLABELED = 255


class Stroke(BaseModel):
    """A polyline drawn with ``class_id`` (255 erases back to unlabeled) at ``width`` pixels."""

    class_id: int = Field(ge=0, le=255, strict=True)
    width: int = Field(default=3, ge=1, le=256, strict=True)
    points: list[tuple[Coord, Coord]] = Field(min_length=1, max_length=10_000,
                                              description="[[x, y], ...] in image pixel coordinates")


class Point(BaseModel):
    """A click: labels the disk of ``radius`` pixels (0 = one pixel) around (x, y)."""

    x: Coord
    y: Coord
    class_id: int = Field(ge=0, le=255, strict=True)
    radius: int = Field(default=0, ge=0, le=128, strict=True)


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
