"""Liveness (/health, no auth) and readiness (/ready: database, storage, broker, model) with reasons."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ..deps import CtxDep
from ..schemas.common import AUTH_RESPONSES
from ..services.health import Readiness, readiness

router = APIRouter(tags=["health"])
ready_router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process answers; no dependencies checked (use /ready for that)."""
    return {"status": "ok"}


@ready_router.get("/ready", response_model=Readiness, responses={503: {"model": Readiness}, **AUTH_RESPONSES})
def ready(ctx: CtxDep) -> JSONResponse:
    """503 with the failing checks' reasons unless database, storage, broker and a model are usable."""
    body = readiness(ctx)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)
