"""Projects: create (with model version 1), update, delete, and their public view."""

from __future__ import annotations

import shutil
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ErrorCode, ServiceError
from core.files import IMAGE_SUFFIXES
from core.orm import Image, ModelVersion, Project
from model.colors import default_palette, hex_color

from ..schemas.common import Page
from ..schemas.projects import ClassSpec, ProjectCreate, ProjectPublic, ProjectUpdate
from .annotations import AnnotationService
from .images import ImageService
from .registry import ModelRegistry


def class_list(specs: list[ClassSpec]) -> list[dict[str, object]]:
    palette = default_palette(len(specs))
    return [{"id": i, "name": c.name, "color": (c.color or hex_color(palette[i])).lower()} for i, c in enumerate(specs)]


def _name_taken(session: Session, name: str, exclude: int | None = None) -> None:
    q = select(Project.id).where(Project.name == name)
    if exclude is not None:
        q = q.where(Project.id != exclude)
    if session.scalar(q) is not None:
        raise ServiceError(ErrorCode.CONFLICT, f"a project named {name!r} already exists")


def create(session: Session, registry: ModelRegistry, body: ProjectCreate, default_variant: str,
           author: str) -> Project:
    _name_taken(session, body.name)
    pretrained = registry.resolve_pretrained(body.pretrained)
    project = Project(name=body.name, description=body.description, variant=body.variant or default_variant,
                      classes=class_list(body.classes))
    session.add(project)
    try:
        session.flush()
    except IntegrityError as e:  # a concurrent create with the same name
        raise ServiceError(ErrorCode.CONFLICT, f"a project named {body.name!r} already exists") from e
    registry.create_initial(session, project, pretrained, author)
    return project


def update(session: Session, project: Project, body: ProjectUpdate) -> Project:
    if body.name is not None and body.name != project.name:
        _name_taken(session, body.name, exclude=project.id)
        project.name = body.name
    if body.description is not None:
        project.description = body.description
    if body.classes is not None:
        if len(body.classes) != len(project.classes):
            raise ServiceError(ErrorCode.CONFLICT, f"the project's models have {len(project.classes)} classes; "
                                                   "renaming and recolouring is allowed, changing the number is not "
                                                   "(create a new project)")
        names = [c.name for c in body.classes]
        if len(set(names)) != len(names):
            raise ServiceError(ErrorCode.INVALID, f"class names must be unique, got {names}")
        merged = []
        for old, new in zip(project.classes, body.classes, strict=True):
            merged.append({"id": old["id"], "name": new.name, "color": (new.color or old["color"]).lower()})
        project.classes = merged
    return project


def delete(session: Session, registry: ModelRegistry, images: ImageService, project: Project) -> Callable[[], None]:
    """Delete the rows (cascade); returns the file clean-up to run after the commit, so a failed commit
    never leaves rows whose files are gone."""
    shas = list(session.scalars(select(Image.sha256).where(Image.project_id == project.id)))
    version_ids = list(session.scalars(select(ModelVersion.id).where(ModelVersion.project_id == project.id)))
    pid = project.id
    session.delete(project)
    session.flush()
    orphans = [sha for sha in shas if session.scalar(select(Image.id).where(Image.sha256 == sha).limit(1)) is None]

    def cleanup() -> None:
        for vid in version_ids:
            registry.forget(vid)
        shutil.rmtree(registry.settings.models_dir / str(pid), ignore_errors=True)
        for sha in orphans:
            for suffix in IMAGE_SUFFIXES.values():
                images.blobs.path(sha, suffix).unlink(missing_ok=True)

    return cleanup


def public(session: Session, project: Project, annotations: AnnotationService) -> ProjectPublic:
    image_count = session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project.id)) or 0
    active = session.get(ModelVersion, project.active_version_id) if project.active_version_id else None
    return ProjectPublic(
        id=project.id, name=project.name, description=project.description, variant=project.variant,
        classes=project.classes,  # type: ignore[arg-type]
        active_version=active.number if active else None, image_count=int(image_count),
        labeled_image_count=annotations.labeled_image_count(session, project.id),
        created_at=project.created_at, updated_at=project.updated_at,
    )


def page(session: Session, annotations: AnnotationService, offset: int, limit: int) -> Page[ProjectPublic]:
    total = session.scalar(select(func.count()).select_from(Project)) or 0
    rows = session.scalars(select(Project).order_by(Project.id).offset(offset).limit(limit))
    return Page(items=[public(session, p, annotations) for p in rows], total=int(total), offset=offset, limit=limit)
