"""Rows by id, or the 404 that names what was asked for: shared by the services and the routers."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.errors import not_found
from core.orm import Image, Project


def project_or_404(session: Session, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None:
        raise not_found("project", project_id)
    return project


def image_or_404(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise not_found("image", image_id)
    return image
