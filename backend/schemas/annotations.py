"""Sparse labels: strokes (polylines), points and label PNGs; every save is a revision."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field


def _json_number(value: object) -> object:
    """Numbers of a drawing are JSON numbers, as the schema's ``integer``/``number`` says: lax parsing would read
    ``true`` as 1 and ``"3"`` as 3. (``1.0`` stays a valid integer, as in JSON Schema.)"""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return value


Coord = Annotated[float, BeforeValidator(_json_number)]
Int = Annotated[int, BeforeValidator(_json_number)]

UNLABELED = 255


class Stroke(BaseModel):
    """A polyline drawn with ``class_id`` (255 erases back to unlabeled) at ``width`` pixels."""

    class_id: Int = Field(ge=0, le=255)
    width: Int = Field(default=3, ge=1, le=256)
    points: list[tuple[Coord, Coord]] = Field(min_length=1, max_length=10_000,
                                              description="[[x, y], ...] in image pixel coordinates")


class Point(BaseModel):
    """A click: labels the disk of ``radius`` pixels (0 = one pixel) around (x, y)."""

    x: Coord
    y: Coord
    class_id: Int = Field(ge=0, le=255)
    radius: Int = Field(default=0, ge=0, le=128)


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
