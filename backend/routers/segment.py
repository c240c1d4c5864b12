"""POST /segment: class map of an uploaded or stored image as palette PNG or JSON (RLE per class).

Walk: router (parse the form) -> ``SegmentationService.segment`` (input, model version, Predictor,
prediction cache) -> ``Segmentation.encode`` -> response.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form
from fastapi.responses import Response

from ..deps import CtxDep, SessionDep
from ..schemas.common import ERROR_RESPONSES, MAX_INT, OptionalFilePart
from ..schemas.segment import SegmentResult
from ..services.predictions import parse_scales
from ..services.segmentation import Target
from ..uploads import optional_upload

router = APIRouter(tags=["segment"], responses=ERROR_RESPONSES)


@router.post("/segment", response_model=SegmentResult,
             responses={200: {"content": {"application/json": {}, "image/png": {}}}})
def segment(session: SessionDep, ctx: CtxDep,
            file: Annotated[OptionalFilePart, File(description="image to segment (or give image_id)")] = None,
            image_id: int | None = Form(None, ge=1, le=MAX_INT, description="a stored image"),
            project_id: int | None = Form(None, ge=1, le=MAX_INT, description="required with an upload"),
            version: int | None = Form(None, ge=1, le=MAX_INT, description="model version; default the active one"),
            flip: bool = Form(False, description="test-time horizontal flip"),
            scales: str | None = Form(None, description="TTA scales, e.g. '0.75,1,1.25'"),
            format: Literal["json", "png"] = Form("json"),
            probabilities: bool = Form(False, description="include (C,H,W) float16 probabilities (JSON only)"),
            live: bool = Form(False, description="the project's live head, refitted on every save (seconds after a "
                                                 "save; not with version, flip or scales)"),
            ) -> Response:
    """Dense class map. A new project's untrained model gives meaningless masks until fine-tuned."""
    tta = parse_scales(scales)
    target = Target(image_id=image_id, project_id=project_id, upload=optional_upload(file))
    out = ctx.segmentation.segment(session, target, version=version, flip=flip, scales=tta, live=live).encode(
        format, probabilities)
    return Response(out.body, media_type=out.media_type, headers=out.headers)
