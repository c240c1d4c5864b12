"""Model versions as the API shows and changes them: public views, promotion, rollback, deletion.

The version store (``ModelRegistry``) keeps the rows and bundles; this service adds what a request needs
around it: the bundle's variant, whether a Predictor is loaded, and dropping a deleted version's cached
predictions.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.orm import Activation, ModelVersion, Project
from model import read_bundle_meta
from model.bundle import BundleError

from ..schemas.models import ActivationPublic, ModelVersionPublic
from .predictions import PredictionService
from .registry import ModelRegistry


def history(session: Session, project: Project) -> list[ActivationPublic]:
    """Every promotion, newest first; rolled-back ones are marked."""
    rows = session.execute(select(Activation, ModelVersion.number)
                           .join(ModelVersion, ModelVersion.id == Activation.version_id)
                           .where(Activation.project_id == project.id).order_by(Activation.id.desc()))
    return [ActivationPublic(version=num, author=a.author, reason=a.reason, rolled_back=a.rolled_back,
                             created_at=a.created_at) for a, num in rows]


class ModelService:
    def __init__(self, registry: ModelRegistry, predictions: PredictionService) -> None:
        self.registry = registry
        self.predictions = predictions

    def public(self, session: Session, project: Project, v: ModelVersion) -> ModelVersionPublic:
        """The row with its bundle's variant ("missing" when the bundle cannot be read) and load state."""
        parent = session.get(ModelVersion, v.parent_id) if v.parent_id else None
        try:
            variant = read_bundle_meta(self.registry.abs_path(v)).config.variant
        except BundleError:
            variant = "missing"
        return ModelVersionPublic(
            project_id=project.id, version=v.number, active=project.active_version_id == v.id, variant=variant,
            path=v.path, parent_version=parent.number if parent else None, job_id=v.job_id, provenance=v.provenance,
            metrics=v.metrics, created_at=v.created_at, loaded=v.id in self.registry.cached_ids())

    def list(self, session: Session, project: Project) -> list[ModelVersionPublic]:
        return [self.public(session, project, v) for v in self.registry.versions(session, project)]

    def active(self, session: Session, project: Project) -> ModelVersionPublic:
        return self.public(session, project, self.registry.active(session, project))

    def get(self, session: Session, project: Project, number: int) -> ModelVersionPublic:
        return self.public(session, project, self.registry.get(session, project, number))

    def promote(self, session: Session, project: Project, number: int, author: str) -> ModelVersionPublic:
        """Serve version ``number`` from the next request on."""
        v = self.registry.get(session, project, number)
        self.registry.promote(session, project, v, author)
        return self.public(session, project, v)

    def rollback(self, session: Session, project: Project, author: str) -> ModelVersionPublic:
        """Undo the newest promotion (409 when there is none to undo)."""
        return self.public(session, project, self.registry.rollback(session, project, author))

    def delete(self, session: Session, project: Project, number: int) -> None:
        """Delete a version that is neither active nor the base of a queued/running job: the row is committed
        first, then its bundle, loaded Predictor and cached predictions go."""
        v = self.registry.get(session, project, number)
        vid = v.id
        cleanup = self.registry.delete(session, project, v)
        session.commit()
        cleanup()
        self.predictions.drop_version(vid)
