"""Segmentation and attention responses (JSON forms; PNG forms are plain image bodies)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .projects import ClassPublic

Stage = Literal["1", "2", "3", "4", "mean"]


class Rle(BaseModel):
    size: list[int] = Field(description="[height, width]")
    counts: str = Field(description="COCO compressed RLE (column-major), as pycocotools writes it")


class ClassMask(BaseModel):
    class_id: int
    name: str
    area: int
    bbox: list[float] = Field(description="[x, y, width, height]")
    rle: Rle


class ArrayB64(BaseModel):
    dtype: str
    shape: list[int]
    data: str = Field(description="base64 of the little-endian C-order bytes")


class LiveInfo(BaseModel):
    labelled_images: int = Field(description="images whose labels the head was fitted on")
    wait_ms: float = Field(description="time this request waited for the refit covering the newest labels")


class SegmentResult(BaseModel):
    project_id: int
    image_id: int | None
    model_version: int
    width: int
    height: int
    cached: bool
    classes: list[ClassPublic]
    areas: dict[str, int] = Field(description="pixels per class name")
    masks: list[ClassMask] = Field(description="one RLE per class present")
    probabilities: ArrayB64 | None = Field(default=None, description="(C, H, W) float16 softmax, on request")
    source: Literal["model", "live"] = Field(
        default="model", description="live: the project's live head (filter bank + the model's frozen encoder, "
                                     "refitted on every save); model: the model version's own decoder")
    live: LiveInfo | None = Field(default=None, description="what the live head was fitted on (live masks only)")
    note: str | None = Field(default=None, description="why a live request got the model's mask, when it did")


class AttentionResult(BaseModel):
    project_id: int
    image_id: int | None
    model_version: int
    x: int
    y: int
    stage: Stage
    width: int
    height: int
    heatmap: ArrayB64 = Field(description="(H, W) float32, sums to 1 over the image")


class PropagatedResult(BaseModel):
    project_id: int
    image_id: int | None
    model_version: int
    stage: Stage
    width: int
    height: int
    classes: list[ClassPublic]
    areas: dict[str, int]
    masks: list[ClassMask]
