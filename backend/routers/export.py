"""Exports: predicted masks as PNGs (zip) or COCO JSON (RLE), and sparse labels with provenance."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from ..deps import CtxDep, SessionDep, project_or_404
from ..schemas.common import ERROR_RESPONSES, MAX_INT, IdPath

router = APIRouter(prefix="/projects/{project_id}/export", tags=["export"], responses=ERROR_RESPONSES)
ZIP: dict[int | str, dict[str, Any]] = {200: {"content": {"application/zip": {}}}}


@router.get("/masks.zip", response_class=Response, responses=ZIP)
def export_masks(project_id: IdPath, session: SessionDep, ctx: CtxDep,
                 version: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    """Palette PNG class map per image from the active (or given) model version, plus manifest.json."""
    out = ctx.exports.masks_zip(session, project_or_404(session, project_id), version)
    return Response(out.data, media_type="application/zip", headers=out.disposition)


@router.get("/coco.json")
def export_coco(project_id: IdPath, session: SessionDep, ctx: CtxDep,
                source: Literal["prediction", "labels"] = Query("prediction"),
                version: int | None = Query(None, ge=1, le=MAX_INT)) -> Response:
    """COCO JSON: one compressed-RLE annotation per (image, class); category id = class id + 1."""
    coco = ctx.exports.coco(session, project_or_404(session, project_id), source, version)
    return Response(json.dumps(coco), media_type="application/json")


@router.get("/labels.zip", response_class=Response, responses=ZIP)
def export_labels(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """Latest sparse label PNG per image (255 = unlabeled) and labels.json with every revision's provenance."""
    out = ctx.exports.labels_zip(session, project_or_404(session, project_id))
    return Response(out.data, media_type="application/zip", headers=out.disposition)
