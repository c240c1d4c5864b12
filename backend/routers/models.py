"""Model versions: list with provenance and metrics, active, promote, roll back, delete unused.

The API serves the active version and picks up a promotion or rollback on the next request.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..deps import CtxDep, PrincipalDep, SessionDep, project_or_404
from ..schemas.common import ERROR_RESPONSES, IdPath
from ..schemas.models import ActivationPublic, ModelVersionPublic
from ..services.models import history

router = APIRouter(prefix="/projects/{project_id}/models", tags=["models"], responses=ERROR_RESPONSES)
# ``{version:int}``: "active", "history" and "rollback" are sibling paths, not malformed version numbers, so
# DELETE /models/active is a 405 (Allow: GET), not a 422 from parsing "active" as a version


@router.get("", response_model=list[ModelVersionPublic])
def list_versions(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> list[ModelVersionPublic]:
    return ctx.models.list(session, project_or_404(session, project_id))


@router.get("/active", response_model=ModelVersionPublic)
def get_active(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> ModelVersionPublic:
    return ctx.models.active(session, project_or_404(session, project_id))


@router.get("/history", response_model=list[ActivationPublic])
def promotion_history(project_id: IdPath, session: SessionDep) -> list[ActivationPublic]:
    """Every promotion, newest first; rolled-back ones are marked."""
    return history(session, project_or_404(session, project_id))


@router.get("/{version:int}", response_model=ModelVersionPublic)
def get_version(project_id: IdPath, version: IdPath, session: SessionDep, ctx: CtxDep) -> ModelVersionPublic:
    return ctx.models.get(session, project_or_404(session, project_id), version)


@router.post("/{version:int}/promote", response_model=ModelVersionPublic)
def promote(project_id: IdPath, version: IdPath, session: SessionDep, ctx: CtxDep, who: PrincipalDep
            ) -> ModelVersionPublic:
    """Serve this version from the next request on."""
    return ctx.models.promote(session, project_or_404(session, project_id), version, who.name)


@router.post("/rollback", response_model=ModelVersionPublic)
def rollback(project_id: IdPath, session: SessionDep, ctx: CtxDep, who: PrincipalDep) -> ModelVersionPublic:
    """Undo the newest promotion; 409 when there is none to undo."""
    return ctx.models.rollback(session, project_or_404(session, project_id), who.name)


@router.delete("/{version:int}", status_code=204)
def delete_version(project_id: IdPath, version: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """Delete a version that is neither active nor the base of a queued/running job."""
    ctx.models.delete(session, project_or_404(session, project_id), version)
    return Response(status_code=204)
