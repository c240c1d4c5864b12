"""Model versions: list with provenance and metrics, active, promote, roll back, delete unused.

The API serves the active version and picks up a promotion or rollback on the next request.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.orm import Activation, ModelVersion, Project
from model import read_bundle_meta
from model.bundle import BundleError

from ..deps import CtxDep, PrincipalDep, SessionDep, project_or_404
from ..schemas.common import ERROR_RESPONSES, IdPath
from ..schemas.models import ActivationPublic, ModelVersionPublic
from ..services.registry import ModelRegistry

router = APIRouter(prefix="/projects/{project_id}/models", tags=["models"], responses=ERROR_RESPONSES)
# ``{version:int}``: "active", "history" and "rollback" are sibling paths, not malformed version numbers, so
# DELETE /models/active is a 405 (Allow: GET), not a 422 from parsing "active" as a version


def public(session: Session, registry: ModelRegistry, project: Project, v: ModelVersion) -> ModelVersionPublic:
    parent = session.get(ModelVersion, v.parent_id) if v.parent_id else None
    try:
        variant = read_bundle_meta(registry.abs_path(v)).config.variant
    except BundleError:
        variant = "missing"
    return ModelVersionPublic(
        project_id=project.id, version=v.number, active=project.active_version_id == v.id, variant=variant,
        path=v.path, parent_version=parent.number if parent else None, job_id=v.job_id, provenance=v.provenance,
        metrics=v.metrics, created_at=v.created_at, loaded=v.id in registry.cached_ids())


@router.get("", response_model=list[ModelVersionPublic])
def list_versions(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> list[ModelVersionPublic]:
    project = project_or_404(session, project_id)
    return [public(session, ctx.registry, project, v) for v in ctx.registry.versions(session, project)]


@router.get("/active", response_model=ModelVersionPublic)
def get_active(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> ModelVersionPublic:
    project = project_or_404(session, project_id)
    return public(session, ctx.registry, project, ctx.registry.active(session, project))


@router.get("/history", response_model=list[ActivationPublic])
def promotion_history(project_id: IdPath, session: SessionDep) -> list[ActivationPublic]:
    """Every promotion, newest first; rolled-back ones are marked."""
    project = project_or_404(session, project_id)
    rows = session.execute(select(Activation, ModelVersion.number).join(ModelVersion,
                                                                        ModelVersion.id == Activation.version_id)
                           .where(Activation.project_id == project.id).order_by(Activation.id.desc()))
    return [ActivationPublic(version=num, author=a.author, reason=a.reason, rolled_back=a.rolled_back,
                             created_at=a.created_at) for a, num in rows]


@router.get("/{version:int}", response_model=ModelVersionPublic)
def get_version(project_id: IdPath, version: IdPath, session: SessionDep, ctx: CtxDep) -> ModelVersionPublic:
    project = project_or_404(session, project_id)
    return public(session, ctx.registry, project, ctx.registry.get(session, project, version))


@router.post("/{version:int}/promote", response_model=ModelVersionPublic)
def promote(project_id: IdPath, version: IdPath, session: SessionDep, ctx: CtxDep, who: PrincipalDep
            ) -> ModelVersionPublic:
    """Serve this version from the next request on."""
    project = project_or_404(session, project_id)
    v = ctx.registry.get(session, project, version)
    ctx.registry.promote(session, project, v, who.name)
    return public(session, ctx.registry, project, v)


@router.post("/rollback", response_model=ModelVersionPublic)
def rollback(project_id: IdPath, session: SessionDep, ctx: CtxDep, who: PrincipalDep) -> ModelVersionPublic:
    """Undo the newest promotion; 409 when there is none to undo."""
    project = project_or_404(session, project_id)
    v = ctx.registry.rollback(session, project, who.name)
    return public(session, ctx.registry, project, v)


@router.delete("/{version:int}", status_code=204)
def delete_version(project_id: IdPath, version: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """Delete a version that is neither active nor the base of a queued/running job."""
    project = project_or_404(session, project_id)
    v = ctx.registry.get(session, project, version)
    vid = v.id
    cleanup = ctx.registry.delete(session, project, v)
    session.commit()
    cleanup()
    ctx.predictions.drop_version(vid)
    return Response(status_code=204)
