"""Readiness: can this process serve? Database, storage, broker and the most likely model, each with a reason."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import select, text

from core.orm import ModelVersion, Project
from core.storage import LocalBlobStore
from jobs.queue import broker_check

if TYPE_CHECKING:
    from ..deps import AppContext


class Check(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    ready: bool
    checks: dict[str, Check]


def readiness(ctx: AppContext) -> Readiness:
    """Every check runs (none stops the others), so one answer lists every reason the service is not ready."""
    checks: dict[str, Check] = {}
    version = None
    try:
        with ctx.sessions() as s:
            s.execute(text("SELECT 1"))
            # the model most likely to be asked for: the newest project's active version
            project = s.scalar(select(Project).order_by(Project.id.desc()).limit(1))
            if project is not None and project.active_version_id is not None:
                version = s.get(ModelVersion, project.active_version_id)
        checks["database"] = Check(ok=True, detail=ctx.engine.dialect.name)
    except Exception as e:
        checks["database"] = Check(ok=False, detail=f"{type(e).__name__}: {e}")
    stores = {"images": ctx.images.blobs, "labels": ctx.annotations.blobs,
              "models": LocalBlobStore(ctx.settings.models_dir)}
    bad = [name for name, store in stores.items() if not store.writable()]
    checks["storage"] = Check(ok=not bad, detail=f"not writable: {', '.join(bad)}" if bad else
                              str(ctx.settings.home.resolve()))
    ok, detail = broker_check(ctx.settings)
    checks["broker"] = Check(ok=ok, detail=detail)
    if version is None:
        checks["model"] = Check(ok=True, detail="no project yet; a model version is created with the first project")
    else:
        try:
            loaded = ctx.registry.loaded(version)
            checks["model"] = Check(ok=True, detail=f"project {version.project_id} version {loaded.number} loaded on "
                                                    f"{loaded.predictor.device}")
        except Exception as e:
            checks["model"] = Check(ok=False, detail=f"cannot load model version {version.number}: {e}")
    return Readiness(ready=all(c.ok for c in checks.values()), checks=checks)
