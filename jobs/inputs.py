"""What a fine-tune job trains on: the project's labelled images at the revisions pinned at its first
start, read back through ``core.files`` (the same pixels and labels the API serves)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.files import StoredFiles
from core.orm import AnnotationRevision, Image, Project
from core.settings import Settings
from model.data import Sample

from .schemas import JobCreate


class JobError(Exception):
    """A job that cannot run as asked; the message is shown to the user as the job's error."""


@dataclass
class Inputs:
    """The labels a job trains on, pinned at its first start so a resumed attempt sees the same data."""

    items: list[dict[str, Any]]  # {image_id, revision, revision_id, sha256, labeled_pixels}

    @classmethod
    def pin(cls, session: Session, project: Project, params: JobCreate) -> Inputs:
        q = select(Image).where(Image.project_id == project.id).order_by(Image.id)
        if params.images is not None:
            q = q.where(Image.id.in_(params.images))
        items = []
        for image in session.scalars(q):
            rev = session.scalar(select(AnnotationRevision).where(AnnotationRevision.image_id == image.id)
                                 .order_by(AnnotationRevision.revision.desc()).limit(1))
            if rev is not None and rev.labeled_pixels > 0:
                items.append({"image_id": image.id, "revision": rev.revision, "revision_id": rev.id,
                              "sha256": image.sha256, "labeled_pixels": rev.labeled_pixels})
        if not items:
            raise JobError(f"project {project.id} has no labelled images to train on (draw scribbles or points "
                           "on at least one image first)")
        return cls(items)

    def load(self, session: Session, settings: Settings) -> tuple[list[Sample], list[np.ndarray]]:
        """Images (RGB uint8, the model's conversion) and their sparse labels at the pinned revisions."""
        files = StoredFiles(settings)
        samples, labels = [], []
        for it in self.items:
            image = session.get(Image, it["image_id"])
            if image is None:
                raise JobError(f"image {it['image_id']} was deleted after the job was queued")
            rev = session.scalar(select(AnnotationRevision).where(AnnotationRevision.image_id == image.id,
                                                                  AnnotationRevision.revision == it["revision"]))
            if rev is None:
                raise JobError(f"annotation revision {it['revision']} of image {image.id} no longer exists")
            rgb = files.image_rgb(image)
            label = files.label(rev, image)
            if label.shape != rgb.shape[:2]:
                raise JobError(f"label of image {image.id} is {label.shape}, the image {rgb.shape[:2]}")
            samples.append(Sample(name=f"img{image.id}", image=rgb))
            labels.append(label)
        return samples, labels
