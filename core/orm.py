"""Database tables (SQLAlchemy 2 declarative). Files live in storage; rows hold their hashes and paths.

A row is written only after its file is in place (storage writes are atomic), so a crash can leave
an unreferenced file (harmless, content-addressed) but never a row pointing nowhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, UTCDateTime, utcnow


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    variant: Mapped[str] = mapped_column(String(8))
    # [{"id": 0, "name": "background", "color": "#000000"}, ...]; ids are 0..C-1 in order
    classes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # the served model version (ModelVersion.id); no FK to avoid a table cycle, kept valid by the registry
    active_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # version numbers are never reused, even after a deletion: history and caches stay unambiguous
    next_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    images: Mapped[list[Image]] = relationship(back_populates="project", cascade="all, delete-orphan",
                                               passive_deletes=True)


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("project_id", "sha256", name="uq_images_project_sha"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    format: Mapped[str] = mapped_column(String(8))  # PNG, JPEG, TIFF
    mode: Mapped[str] = mapped_column(String(16))  # Pillow mode: L, I;16, RGB, ...
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    project: Mapped[Project] = relationship(back_populates="images")


class AnnotationRevision(Base):
    """One saved state of an image's sparse label; the newest revision is the current annotation."""

    __tablename__ = "annotation_revisions"
    __table_args__ = (UniqueConstraint("image_id", "revision", name="uq_annotation_image_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    label_sha256: Mapped[str] = mapped_column(String(64))
    author: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # "png" | "strokes" (PUT) | "patch" (PATCH)
    strokes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    points: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    labeled_pixels: Mapped[int] = mapped_column(Integer)
    class_counts: Mapped[dict[str, int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ModelVersion(Base):
    """A bundle directory ``models/<project>/v<number>`` written by ``model.bundle.save_bundle``."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_model_versions_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(512))  # relative to the data directory
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"),
                                                  nullable=True)
    job_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    provenance: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Activation(Base):
    """Promotion history: a stack of activations; rollback pops the newest one."""

    __tablename__ = "activations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    author: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(String(255), default="")
    rolled_back: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Job(Base):
    """A long-running task (fine-tuning); the worker updates ``state`` and ``progress``."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    base_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id", ondelete="SET NULL"),
                                                        nullable=True)
    result_version_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # crash recovery: how many times a worker started it, which process runs it ("host:pid"), and when
    # that process last said it was alive (a thread writes it, so long steps do not look like death)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(255), nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # outcome of a finished job: version, promoted or not and why, held-out metrics of both models
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    author: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
