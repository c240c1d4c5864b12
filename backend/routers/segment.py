"""POST /segment: class map of an uploaded or stored image as palette PNG or JSON (RLE per class).

Walk: router -> registry.active(project) -> Predictor (cached per version) -> encoder -> response.
"""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from core.errors import ErrorCode, ServiceError
from core.orm import Image, Project
from model.colors import class_colors

from ..deps import AppContext, CtxDep, SessionDep, image_or_404, project_or_404
from ..schemas.common import ERROR_RESPONSES, MAX_INT
from ..schemas.segment import SegmentResult
from ..services.encoding import array_b64, palette_png, rle_per_class
from ..services.images import check_filename, check_image_bytes, decode_array
from ..services.predictions import parse_scales
from .images import read_upload

router = APIRouter(tags=["segment"], responses=ERROR_RESPONSES)


def resolve_input(session: Session, ctx: AppContext, file: UploadFile | None, image_id: int | None,
                  project_id: int | None) -> tuple[Project, Image | None, np.ndarray]:
    """Either a stored image (its project implied) or an upload with its project; never both."""
    if (file is None) == (image_id is None):
        raise ServiceError(ErrorCode.INVALID, "send exactly one of 'file' (an upload) or 'image_id'")
    if image_id is not None:
        image = image_or_404(session, image_id)
        if project_id is not None and project_id != image.project_id:
            raise ServiceError(ErrorCode.INVALID, f"image {image_id} belongs to project {image.project_id}, "
                                                  f"not {project_id}")
        return project_or_404(session, image.project_id), image, ctx.images.array(image)
    assert file is not None
    if project_id is None:
        raise ServiceError(ErrorCode.INVALID, "an uploaded image needs 'project_id' (whose model to use)")
    project = project_or_404(session, project_id)
    check_filename(file.filename)
    checked = check_image_bytes(read_upload(file, ctx.settings), ctx.settings)
    return project, None, decode_array(checked.data)


def colors_of(project: Project) -> list[tuple[int, int, int]]:
    return class_colors(project.classes)


@router.post("/segment", response_model=SegmentResult,
             responses={200: {"content": {"application/json": {}, "image/png": {}}}})
def segment(session: SessionDep, ctx: CtxDep,
            file: UploadFile | None = File(None, description="image to segment (or give image_id)"),
            image_id: int | None = Form(None, ge=1, le=MAX_INT, description="a stored image"),
            project_id: int | None = Form(None, ge=1, le=MAX_INT, description="required with an upload"),
            version: int | None = Form(None, ge=1, le=MAX_INT, description="model version; default the active one"),
            flip: bool = Form(False, description="test-time horizontal flip"),
            scales: str | None = Form(None, description="TTA scales, e.g. '0.75,1,1.25'"),
            format: Literal["json", "png"] = Form("json"),
            probabilities: bool = Form(False, description="include (C,H,W) float16 probabilities (JSON only)"),
            ) -> Response:
    """Dense class map. A new project's untrained model gives meaningless masks until fine-tuned."""
    tta = parse_scales(scales)
    project, image, array = resolve_input(session, ctx, file, image_id, project_id)
    version_row = ctx.registry.resolve(session, project, version)
    model = ctx.registry.loaded(version_row)
    pred, cached = ctx.predictions.segment(model, array, flip=flip, scales=tta,
                                           image_sha=image.sha256 if image is not None else None)
    # the model's share of the request, so clients can tell service overhead from inference
    timing = {"Server-Timing": f"model;dur={ctx.predictions.predict_ms():.1f}"}
    names = [c["name"] for c in project.classes]
    areas = {n: int(a) for n, a in zip(names, pred.class_areas(), strict=False)}
    if format == "png":
        return Response(palette_png(pred.class_map, colors_of(project)), media_type="image/png", headers={
            "X-Model-Version": str(version_row.number), "X-Cached": str(cached).lower(),
            "X-Class-Areas": json.dumps(areas), **timing})
    h, w = pred.class_map.shape
    body = SegmentResult(
        project_id=project.id, image_id=image.id if image else None, model_version=version_row.number, width=w,
        height=h, cached=cached, classes=project.classes,  # type: ignore[arg-type]
        areas=areas, masks=rle_per_class(pred.class_map, names),  # type: ignore[arg-type]
        probabilities=array_b64(pred.probs, "float16") if probabilities else None,  # type: ignore[arg-type]
    )
    return Response(body.model_dump_json(), media_type="application/json", headers=timing)
