"""Attention maps for a query pixel (paper Fig. 3) and the propagated-label map Y_l (paper Eq. 4)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from core.orm import Image, Project
from model.preprocess import to_rgb_array

from ..deps import AppContext, CtxDep, SessionDep, image_or_404, project_or_404
from ..schemas.common import ERROR_RESPONSES, MAX_INT, IdPath
from ..schemas.segment import AttentionResult, PropagatedResult, Stage
from ..services.encoding import array_b64, heatmap_overlay_png, npy_bytes, palette_png, rle_per_class
from .segment import colors_of, resolve_input

router = APIRouter(tags=["attention"], responses=ERROR_RESPONSES)
Fmt = Literal["png", "json", "npy"]
MEDIA: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}, "application/json": {}, "application/octet-stream": {}}}}


def _attention(session: Session, ctx: AppContext, project: Project, image: Image | None, array: np.ndarray,
               x: int, y: int, stage: str, fmt: str, opacity: float, version: int | None) -> Response:
    version_row = ctx.registry.resolve(session, project, version)
    model = ctx.registry.loaded(version_row)
    heat = ctx.predictions.attention(model, array, x, y)[stage]
    headers = {"X-Model-Version": str(version_row.number)}
    if fmt == "png":
        return Response(heatmap_overlay_png(to_rgb_array(array), heat, opacity), media_type="image/png",
                        headers=headers)
    if fmt == "npy":
        return Response(npy_bytes(heat.astype(np.float32)), media_type="application/octet-stream", headers=headers)
    h, w = heat.shape
    body = AttentionResult(project_id=project.id, image_id=image.id if image else None,
                           model_version=version_row.number, x=x, y=y, stage=stage, width=w,  # type: ignore[arg-type]
                           height=h, heatmap=array_b64(heat, "float32"))  # type: ignore[arg-type]
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


@router.get("/images/{image_id}/attention", response_model=AttentionResult, responses=MEDIA)
def get_attention(image_id: IdPath, session: SessionDep, ctx: CtxDep,
                  x: int = Query(ge=0, le=MAX_INT, description="query pixel column"),
                  y: int = Query(ge=0, le=MAX_INT, description="query pixel row"),
                  stage: Stage = Query("mean"), format: Fmt = Query("png"),
                  opacity: float = Query(0.6, ge=0, le=1, description="heatmap opacity of the PNG overlay"),
                  version: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    """Where the patch containing (x, y) attends: PNG overlay, JSON base64 float32, or .npy."""
    image = image_or_404(session, image_id)
    project = project_or_404(session, image.project_id)
    return _attention(session, ctx, project, image, ctx.images.array(image), x, y, stage, format, opacity, version)


@router.post("/attention", response_model=AttentionResult, responses=MEDIA)
def post_attention(session: SessionDep, ctx: CtxDep,
                   file: UploadFile | None = File(None), image_id: int | None = Form(None, ge=1, le=MAX_INT),
                   project_id: int | None = Form(None, ge=1, le=MAX_INT),
                   x: int = Form(ge=0, le=MAX_INT), y: int = Form(ge=0, le=MAX_INT),
                   stage: Stage = Form("mean"), format: Fmt = Form("png"), opacity: float = Form(0.6, ge=0, le=1),
                   version: int | None = Form(None, ge=1, le=MAX_INT)) -> Response:
    """As GET, for an uploaded image (with project_id) or a stored one."""
    project, image, array = resolve_input(session, ctx, file, image_id, project_id)
    return _attention(session, ctx, project, image, array, x, y, stage, format, opacity, version)


@router.get("/images/{image_id}/propagated", response_model=PropagatedResult,
            responses={200: {"content": {"image/png": {}, "application/json": {}}}})
def get_propagated(image_id: IdPath, session: SessionDep, ctx: CtxDep, stage: Stage = Query("mean"),
                   format: Literal["png", "json"] = Query("png"),
                   version: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    """Y_l: the labels the encoder's attention carries from the decoder's prediction, as a class map."""
    image = image_or_404(session, image_id)
    project = project_or_404(session, image.project_id)
    version_row = ctx.registry.resolve(session, project, version)
    pred = ctx.predictions.propagated(ctx.registry.loaded(version_row), ctx.images.array(image), stage)
    if format == "png":
        return Response(palette_png(pred.class_map, colors_of(project)), media_type="image/png",
                        headers={"X-Model-Version": str(version_row.number)})
    names = [c["name"] for c in project.classes]
    h, w = pred.class_map.shape
    body = PropagatedResult(
        project_id=project.id, image_id=image.id, model_version=version_row.number, stage=stage, width=w, height=h,
        classes=project.classes,  # type: ignore[arg-type]
        areas={n: int(a) for n, a in zip(names, pred.class_areas(), strict=False)},
        masks=rle_per_class(pred.class_map, names),  # type: ignore[arg-type]
    )
    return Response(body.model_dump_json(), media_type="application/json")
