"""Serving the model: one request's input image -> model version -> Predictor -> encoded result.

Walk of ``POST /segment``: the router parses the form into a ``Target`` and calls
``SegmentationService.segment``, which resolves the input (a stored image, or an upload checked as
uploads are, with the project whose model to use), the model version (the active one unless named),
its loaded Predictor (``ModelRegistry``'s cache) and the prediction (``PredictionService``, cached on
disk per stored image and version). The ``Segmentation`` it returns knows its class colours and
areas and encodes itself as PNG or JSON; the router sends those bytes. Attention maps and propagated
labels take the same path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from sqlalchemy.orm import Session

from core.errors import ErrorCode, ServiceError
from core.orm import Image, ModelVersion, Project
from model import Prediction
from model.colors import class_colors
from model.preprocess import to_rgb_array

from ..schemas.projects import ClassPublic
from ..schemas.segment import ArrayB64, AttentionResult, ClassMask, LiveInfo, PropagatedResult, SegmentResult, Stage
from .encoding import array_b64, heatmap_overlay_png, npy_bytes, palette_png, rle_per_class
from .images import ImageService, Upload
from .live import LiveNotReady, LiveService
from .lookup import image_or_404, project_or_404
from .predictions import PredictionService
from .registry import LoadedModel, ModelRegistry


@dataclass(frozen=True)
class Target:
    """The input a request names: a stored image (its project implied, ``project_id`` only checked), or
    an upload together with the project whose model segments it."""

    image_id: int | None = None
    project_id: int | None = None
    upload: Upload | None = None


@dataclass(frozen=True)
class Source:
    project: Project
    image: Image | None
    array: np.ndarray  # as stored: gray, 16-bit or RGB(A), the form the Predictor takes


@dataclass(frozen=True)
class Encoded:
    """A response body and the headers that go with it."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)


def _names(project: Project) -> list[str]:
    return [c["name"] for c in project.classes]


def _areas(project: Project, prediction: Prediction) -> dict[str, int]:
    return {n: int(a) for n, a in zip(_names(project), prediction.class_areas(), strict=False)}


def _classes(project: Project) -> list[ClassPublic]:
    return [ClassPublic.model_validate(c) for c in project.classes]


def _masks(project: Project, class_map: np.ndarray) -> list[ClassMask]:
    return [ClassMask.model_validate(m) for m in rle_per_class(class_map, _names(project))]


@dataclass(frozen=True)
class Segmentation:
    project: Project
    image: Image | None
    version: int
    prediction: Prediction
    cached: bool
    model_ms: float  # the forward's share of the request (0 when served from the cache)
    source: Literal["model", "live"] = "model"
    live: LiveInfo | None = None
    note: str | None = None

    @property
    def areas(self) -> dict[str, int]:
        """Pixels per class name."""
        return _areas(self.project, self.prediction)

    def png(self) -> bytes:
        return palette_png(self.prediction.class_map, class_colors(self.project.classes))

    def result(self, probabilities: bool = False) -> SegmentResult:
        h, w = self.prediction.class_map.shape
        return SegmentResult(
            project_id=self.project.id, image_id=self.image.id if self.image else None, model_version=self.version,
            width=w, height=h, cached=self.cached, classes=_classes(self.project), areas=self.areas,
            masks=_masks(self.project, self.prediction.class_map),
            probabilities=ArrayB64.model_validate(array_b64(self.prediction.probs, "float16")) if probabilities
            else None, source=self.source, live=self.live, note=self.note,
        )

    def encode(self, fmt: Literal["json", "png"], probabilities: bool = False) -> Encoded:
        """PNG: the palette class map, with version, cache state and areas in headers; JSON: ``SegmentResult``
        (RLE per class, optional float16 probabilities). Both carry ``Server-Timing: model;dur=<ms>``."""
        timing = {"Server-Timing": f"model;dur={self.model_ms:.1f}"}
        if fmt == "png":
            live = {"X-Live-Images": str(self.live.labelled_images), "X-Live-Wait-Ms": f"{self.live.wait_ms:.0f}"} \
                if self.live is not None else {}
            return Encoded(self.png(), "image/png", {
                "X-Model-Version": str(self.version), "X-Cached": str(self.cached).lower(),
                "X-Class-Areas": json.dumps(self.areas), "X-Mask-Source": self.source, **live, **timing})
        return Encoded(self.result(probabilities).model_dump_json().encode(), "application/json", timing)


@dataclass(frozen=True)
class Attention:
    source: Source
    version: int
    x: int
    y: int
    stage: Stage
    heat: np.ndarray  # (H, W) at image size, sums to 1

    def result(self) -> AttentionResult:
        h, w = self.heat.shape
        image = self.source.image
        return AttentionResult(project_id=self.source.project.id, image_id=image.id if image else None,
                               model_version=self.version, x=self.x, y=self.y, stage=self.stage, width=w, height=h,
                               heatmap=ArrayB64.model_validate(array_b64(self.heat, "float32")))

    def encode(self, fmt: Literal["png", "json", "npy"], opacity: float = 0.6) -> Encoded:
        """PNG: the heatmap blended over the image at ``opacity``; JSON: ``AttentionResult``; npy: float32."""
        headers = {"X-Model-Version": str(self.version)}
        if fmt == "png":
            return Encoded(heatmap_overlay_png(to_rgb_array(self.source.array), self.heat, opacity), "image/png",
                           headers)
        if fmt == "npy":
            return Encoded(npy_bytes(self.heat.astype(np.float32)), "application/octet-stream", headers)
        return Encoded(self.result().model_dump_json().encode(), "application/json", headers)


@dataclass(frozen=True)
class Propagated:
    project: Project
    image: Image
    version: int
    stage: Stage
    prediction: Prediction

    def result(self) -> PropagatedResult:
        h, w = self.prediction.class_map.shape
        return PropagatedResult(project_id=self.project.id, image_id=self.image.id, model_version=self.version,
                                stage=self.stage, width=w, height=h, classes=_classes(self.project),
                                areas=_areas(self.project, self.prediction),
                                masks=_masks(self.project, self.prediction.class_map))

    def encode(self, fmt: Literal["png", "json"]) -> Encoded:
        if fmt == "png":
            return Encoded(palette_png(self.prediction.class_map, class_colors(self.project.classes)), "image/png",
                           {"X-Model-Version": str(self.version)})
        return Encoded(self.result().model_dump_json().encode(), "application/json")


class SegmentationService:
    def __init__(self, registry: ModelRegistry, images: ImageService, predictions: PredictionService,
                 live: LiveService) -> None:
        self.registry = registry
        self.images = images
        self.predictions = predictions
        self.live = live

    def source(self, session: Session, target: Target) -> Source:
        """Exactly one of a stored image or an upload (422 otherwise); an upload needs its project, a stored
        image's project must match ``project_id`` when one is given."""
        if (target.upload is None) == (target.image_id is None):
            raise ServiceError(ErrorCode.INVALID, "send exactly one of 'file' (an upload) or 'image_id'")
        if target.image_id is not None:
            image = image_or_404(session, target.image_id)
            if target.project_id is not None and target.project_id != image.project_id:
                raise ServiceError(ErrorCode.INVALID, f"image {target.image_id} belongs to project "
                                                      f"{image.project_id}, not {target.project_id}")
            return Source(project_or_404(session, image.project_id), image, self.images.array(image))
        assert target.upload is not None
        if target.project_id is None:
            raise ServiceError(ErrorCode.INVALID, "an uploaded image needs 'project_id' (whose model to use)")
        project = project_or_404(session, target.project_id)
        return Source(project, None, self.images.decode_upload(target.upload))

    def model(self, session: Session, project: Project, version: int | None) -> tuple[ModelVersion, LoadedModel]:
        """The named version (404 if it does not exist) or the active one, and its loaded Predictor."""
        row = self.registry.resolve(session, project, version)
        return row, self.registry.loaded(row)

    def segment(self, session: Session, target: Target, *, version: int | None = None, flip: bool = False,
                scales: Sequence[float] = (1.0,), live: bool = False) -> Segmentation:
        """Dense class map and probabilities; stored images are cached per (image, version, TTA).

        ``live``: from the project's live head, refitted on every save (the active version's encoder; a
        named ``version`` or TTA do not apply). Without any labelled pixel yet, the model's mask is given,
        and ``note`` says so.
        """
        src = self.source(session, target)
        note = None
        if live:
            if version is not None or flip or tuple(scales) != (1.0,):
                raise ServiceError(ErrorCode.INVALID, "live masks come from the active version without TTA: drop "
                                                      "'version', 'flip' and 'scales', or 'live'")
            t0 = time.perf_counter()
            try:
                out = self.live.predict(session, src.project, src.image, src.array)
            except LiveNotReady:
                note = "no labelled pixel in the project yet: this is the model's own mask; save labels for live ones"
            else:
                return Segmentation(src.project, src.image, out.version, out.prediction, False,
                                    (time.perf_counter() - t0) * 1000, "live",
                                    LiveInfo(labelled_images=out.labelled_images, wait_ms=out.wait_ms))
        row, model = self.model(session, src.project, version)
        pred, cached = self.predictions.segment(model, src.array, flip=flip, scales=scales,
                                                image_sha=src.image.sha256 if src.image is not None else None)
        return Segmentation(src.project, src.image, row.number, pred, cached, self.predictions.predict_ms(),
                            note=note)

    def attention(self, session: Session, target: Target, x: int, y: int, *, stage: Stage = "mean",
                  version: int | None = None) -> Attention:
        """Where the patch containing pixel (x, y) attends, per ``stage`` or their mean (422 outside the image)."""
        src = self.source(session, target)
        row, model = self.model(session, src.project, version)
        heat = self.predictions.attention(model, src.array, x, y)[stage]
        return Attention(src, row.number, x, y, stage, heat)

    def propagated(self, session: Session, image_id: int, *, stage: Stage = "mean",
                   version: int | None = None) -> Propagated:
        """Y_l of a stored image: the labels attention carries from the decoder's prediction, as a class map."""
        image = image_or_404(session, image_id)
        project = project_or_404(session, image.project_id)
        row, model = self.model(session, project, version)
        pred = self.predictions.propagated(model, self.images.array(image), stage)
        return Propagated(project, image, row.number, stage, pred)
