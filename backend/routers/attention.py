"""Attention maps for a query pixel (paper Fig. 3) and the propagated-label map Y_l (paper Eq. 4)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Query
from fastapi.responses import Response

from ..deps import CtxDep, SessionDep
from ..schemas.common import ERROR_RESPONSES, MAX_INT, IdPath, OptionalFilePart
from ..schemas.segment import AttentionResult, PropagatedResult, Stage
from ..services.segmentation import Target
from ..uploads import optional_upload

router = APIRouter(tags=["attention"], responses=ERROR_RESPONSES)
Fmt = Literal["png", "json", "npy"]
MEDIA: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}, "application/json": {}, "application/octet-stream": {}}}}



@router.get("/images/{image_id}/attention", response_model=AttentionResult, responses=MEDIA)
def get_attention(image_id: IdPath, session: SessionDep, ctx: CtxDep,
                  x: int = Query(ge=0, le=MAX_INT, description="query pixel column"),
                  y: int = Query(ge=0, le=MAX_INT, description="query pixel row"),
                  stage: Stage = Query("mean"), format: Fmt = Query("png"),
                  opacity: float = Query(0.6, ge=0, le=1, description="heatmap opacity of the PNG overlay"),
                  version: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    """Where the patch containing (x, y) attends: PNG overlay, JSON base64 float32, or .npy."""
    out = ctx.segmentation.attention(session, Target(image_id=image_id), x, y, stage=stage, version=version
                                     ).encode(format, opacity)
    return Response(out.body, media_type=out.media_type, headers=out.headers)


@router.post("/attention", response_model=AttentionResult, responses=MEDIA)
def post_attention(session: SessionDep, ctx: CtxDep,
                   file: Annotated[OptionalFilePart, File(description="image (or give image_id)")] = None,
                   image_id: int | None = Form(None, ge=1, le=MAX_INT),
                   project_id: int | None = Form(None, ge=1, le=MAX_INT),
                   x: int = Form(ge=0, le=MAX_INT), y: int = Form(ge=0, le=MAX_INT),
                   stage: Stage = Form("mean"), format: Fmt = Form("png"), opacity: float = Form(0.6, ge=0, le=1),
                   version: int | None = Form(None, ge=1, le=MAX_INT)) -> Response:
    """As GET, for an uploaded image (with project_id) or a stored one."""
    target = Target(image_id=image_id, project_id=project_id, upload=optional_upload(file))
    out = ctx.segmentation.attention(session, target, x, y, stage=stage, version=version).encode(format, opacity)
    return Response(out.body, media_type=out.media_type, headers=out.headers)


@router.get("/images/{image_id}/propagated", response_model=PropagatedResult,
            responses={200: {"content": {"image/png": {}, "application/json": {}}}})
def get_propagated(image_id: IdPath, session: SessionDep, ctx: CtxDep, stage: Stage = Query("mean"),
                   format: Literal["png", "json"] = Query("png"),
                   version: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    """Y_l: the labels the encoder's attention carries from the decoder's prediction, as a class map."""
    out = ctx.segmentation.propagated(session, image_id, stage=stage, version=version).encode(format)
    return Response(out.body, media_type=out.media_type, headers=out.headers)
