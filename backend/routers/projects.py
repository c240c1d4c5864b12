"""/projects: create (with an initial model version), list, get, update, delete."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response

from ..deps import CtxDep, PrincipalDep, SessionDep, project_or_404
from ..schemas.common import ERROR_RESPONSES, IdPath, Offset, Page
from ..schemas.projects import ProjectCreate, ProjectPublic, ProjectUpdate
from ..services import projects as svc

router = APIRouter(prefix="/projects", tags=["projects"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, response_model=ProjectPublic)
def create_project(body: ProjectCreate, session: SessionDep, ctx: CtxDep, who: PrincipalDep) -> ProjectPublic:
    """Creates the project and its model version 1 (random or pretrained init: untrained masks)."""
    project = svc.create(session, ctx.registry, body, ctx.settings.default_variant, who.name)
    return svc.public(session, project, ctx.annotations)


@router.get("", response_model=Page[ProjectPublic])
def list_projects(session: SessionDep, ctx: CtxDep, offset: Offset = 0,
                  limit: int = Query(50, ge=1, le=500)) -> Page[ProjectPublic]:
    return svc.page(session, ctx.annotations, offset, limit)


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> ProjectPublic:
    return svc.public(session, project_or_404(session, project_id), ctx.annotations)


@router.patch("/{project_id}", response_model=ProjectPublic)
def update_project(project_id: IdPath, body: ProjectUpdate, session: SessionDep, ctx: CtxDep) -> ProjectPublic:
    project = svc.update(session, project_or_404(session, project_id), body)
    session.flush()
    return svc.public(session, project, ctx.annotations)


@router.delete("/{project_id}", status_code=204)
def delete_project(project_id: IdPath, session: SessionDep, ctx: CtxDep) -> Response:
    """Deletes the project, its images, labels, model versions and jobs."""
    cleanup = svc.delete(session, ctx.registry, ctx.images, project_or_404(session, project_id))
    session.commit()
    cleanup()
    ctx.live.forget(project_id)  # its live head, cached features and stored rows
    return Response(status_code=204)
