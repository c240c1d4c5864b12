"""Model versions: bundle directories on disk, their rows, the active one and the promotion history.

Versions are bundle directories ``models/<project id>/v<number>`` written atomically by
``model.bundle.save_bundle``; the database records provenance, metrics and the promotion history.
The API (``backend.services.registry.ModelRegistry``, which adds a predictor cache) and the worker
(which registers what a fine-tune job trained) share this one implementation.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from model import ModelConfig, build_sasformer, load_pretrained, save_bundle
from model.bundle import BundleError
from model.colors import class_colors
from model.pretrained import PretrainedError, describe

from .errors import ErrorCode, ServiceError, not_found
from .orm import Activation, Job, ModelVersion, Project
from .settings import Settings

ACTIVE_JOB_STATES = ("queued", "running")


class VersionStore:
    """Model versions of each project: bundle directories, their rows, and the promotion history."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # ---- paths --------------------------------------------------------------------------------
    def version_dir(self, project_id: int, number: int) -> Path:
        return self.settings.models_dir / str(project_id) / f"v{number}"

    def abs_path(self, version: ModelVersion) -> Path:
        return self.settings.home / version.path

    def _next_number(self, session: Session, project_id: int) -> int:
        """Take the project's next version number (with a row lock on PostgreSQL, so two writers differ)."""
        project = session.scalar(select(Project).where(Project.id == project_id).with_for_update())
        if project is None:
            raise not_found("project", project_id)
        number = project.next_version or 1
        # a directory left by a crashed writer must not be reused either
        while self.version_dir(project_id, number).exists():
            number += 1
        project.next_version = number + 1
        session.flush()
        return number

    # ---- creating versions --------------------------------------------------------------------
    def resolve_pretrained(self, name: str | None) -> Path | None:
        """A client names a checkpoint file in ``pretrained_dir``; only the server's settings hold paths."""
        if name is None:
            return self.settings.default_pretrained
        if self.settings.pretrained_dir is None:
            raise ServiceError(ErrorCode.INVALID, "this server has no pretrained_dir configured; omit 'pretrained'")
        if "/" in name or "\\" in name or name in ("", ".", "..") or "\x00" in name:
            raise ServiceError(ErrorCode.INVALID, f"'pretrained' must be a file name, not a path: {name!r}")
        path = self.settings.pretrained_dir / name
        if not path.is_file():
            raise ServiceError(ErrorCode.INVALID, f"pretrained checkpoint {name!r} not found in pretrained_dir")
        return path

    SEED_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")

    def seed_files(self) -> list[dict[str, Any]]:
        """Checkpoints a new project (or a job) may start from: the files of ``pretrained_dir``.

        Each entry: ``name``, ``bytes``, ``layout`` (``sasformer`` = a bundle trained with this tool,
        ``nvlabs``/``hf`` = ImageNet MiT/SegFormer weights; None when only loading would tell),
        ``num_classes`` of the head it carries, ``default`` (what a project naming none gets), and
        ``error`` when the header is unreadable.
        """
        out: list[dict[str, Any]] = []
        default = self.settings.default_pretrained
        folder = self.settings.pretrained_dir
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in self.SEED_SUFFIXES) \
            if folder is not None and folder.is_dir() else []
        for path in files:
            entry: dict[str, Any] = {"name": path.name, "bytes": path.stat().st_size, "layout": None,
                                     "num_classes": None, "error": None,
                                     "default": default is not None and default.resolve() == path.resolve()}
            try:
                info = describe(path)
                entry.update(layout=info.layout, num_classes=info.num_classes)
            except PretrainedError as e:
                entry["error"] = str(e)
            out.append(entry)
        return out

    def create_initial(self, session: Session, project: Project, pretrained: Path | None, author: str) -> ModelVersion:
        """Version 1 of a new project: random or pretrained init, so /segment works at once (its masks are
        meaningless until fine-tuned)."""
        cfg = ModelConfig(
            variant=project.variant,
            num_classes=len(project.classes),
            class_names=[c["name"] for c in project.classes],
            class_colors=class_colors(project.classes),
        )
        model = build_sasformer(cfg)
        provenance: dict[str, Any] = {"init": "scratch", "created_by": author}
        if pretrained is not None:
            try:
                report = load_pretrained(model, pretrained)
            except PretrainedError as e:
                raise ServiceError(ErrorCode.INVALID, str(e)) from e
            provenance.update(init="pretrained", pretrained=pretrained.name, layout=report.layout,
                              loaded_tensors=len(report.loaded))
        number = self._next_number(session, project.id)
        path = save_bundle(model, self.version_dir(project.id, number), provenance)
        version = ModelVersion(project_id=project.id, number=number,
                               path=str(path.relative_to(self.settings.home)), provenance=provenance, metrics={})
        session.add(version)
        session.flush()
        self._activate(session, project, version, author, "initial version")
        return version

    def register(self, session: Session, project_id: int, path: Path, *, metrics: dict[str, Any] | None = None,
                 parent_id: int | None = None, job_id: int | None = None, promote: bool = False,
                 author: str = "worker") -> ModelVersion:
        """Record a bundle that a training job wrote (with ``save_bundle``) at ``allocate_dir``'s path."""
        project = session.get(Project, project_id)
        if project is None:
            raise not_found("project", project_id)
        try:
            bundle = self._read_meta(path)
        except BundleError as e:
            raise ServiceError(ErrorCode.INVALID, str(e)) from e
        if bundle.config.num_classes != len(project.classes):
            raise ServiceError(ErrorCode.CONFLICT, f"bundle has {bundle.config.num_classes} classes, project has "
                                                   f"{len(project.classes)}")
        path = path.resolve()
        home = self.settings.home.resolve()
        if path.parent != (self.settings.models_dir / str(project_id)).resolve() or not path.name[1:].isdigit():
            raise ServiceError(ErrorCode.INVALID, f"{path} is not a version directory of project {project_id} "
                                                  "(use allocate_dir)")
        number = int(path.name[1:])
        version = ModelVersion(project_id=project_id, number=number, path=str(path.relative_to(home)),
                               provenance=bundle.provenance, metrics=metrics or {}, parent_id=parent_id,
                               job_id=job_id)
        session.add(version)
        session.flush()
        if promote:
            self._activate(session, project, version, author, f"promoted by job {job_id}")
        return version

    def allocate_dir(self, session: Session, project_id: int) -> Path:
        """Where the next version of a project should be saved (not yet existing)."""
        return self.version_dir(project_id, self._next_number(session, project_id))

    @staticmethod
    def _read_meta(path: Path) -> Any:
        from model import read_bundle_meta

        return read_bundle_meta(path)

    # ---- lookup -------------------------------------------------------------------------------
    def versions(self, session: Session, project: Project) -> list[ModelVersion]:
        return list(session.scalars(select(ModelVersion).where(ModelVersion.project_id == project.id)
                                    .order_by(ModelVersion.number)))

    def get(self, session: Session, project: Project, number: int) -> ModelVersion:
        v = session.scalar(select(ModelVersion).where(ModelVersion.project_id == project.id,
                                                      ModelVersion.number == number))
        if v is None:
            raise not_found(f"model version {number} of project", project.id)
        return v

    def active(self, session: Session, project: Project) -> ModelVersion:
        if project.active_version_id is None:
            raise ServiceError(ErrorCode.UNAVAILABLE, f"project {project.id} has no active model version")
        v = session.get(ModelVersion, project.active_version_id)
        if v is None:
            raise ServiceError(ErrorCode.UNAVAILABLE, f"project {project.id}'s active model version is missing")
        return v

    def resolve(self, session: Session, project: Project, number: int | None) -> ModelVersion:
        return self.active(session, project) if number is None else self.get(session, project, number)

    # ---- promotion history --------------------------------------------------------------------
    def _activate(self, session: Session, project: Project, version: ModelVersion, author: str, reason: str) -> None:
        session.add(Activation(project_id=project.id, version_id=version.id, author=author, reason=reason))
        project.active_version_id = version.id

    def promote(self, session: Session, project: Project, version: ModelVersion, author: str) -> None:
        if project.active_version_id == version.id:
            raise ServiceError(ErrorCode.CONFLICT, f"model version {version.number} is already active")
        self._activate(session, project, version, author, "promoted")

    def rollback(self, session: Session, project: Project, author: str) -> ModelVersion:
        """Undo the newest promotion: the version active before it is served again."""
        stack = list(session.scalars(select(Activation).where(Activation.project_id == project.id,
                                                              Activation.rolled_back.is_(False))
                                     .order_by(Activation.id.desc())))
        if len(stack) < 2:
            raise ServiceError(ErrorCode.CONFLICT, "nothing to roll back to: no earlier promotion is recorded")
        stack[0].rolled_back = True
        previous = session.get(ModelVersion, stack[1].version_id)
        assert previous is not None  # activations cascade with their version
        project.active_version_id = previous.id
        return previous

    def delete(self, session: Session, project: Project, version: ModelVersion) -> Callable[[], None]:
        """Delete the row; returns the directory removal to run after the commit."""
        if project.active_version_id == version.id:
            raise ServiceError(ErrorCode.CONFLICT, f"model version {version.number} is active; promote another first")
        busy = session.scalar(select(Job.id).where(Job.base_version_id == version.id,
                                                   Job.state.in_(ACTIVE_JOB_STATES)))
        if busy is not None:
            raise ServiceError(ErrorCode.CONFLICT, f"model version {version.number} is the base of job {busy}")
        path = self.abs_path(version)
        vid = version.id
        session.delete(version)
        session.flush()

        def cleanup() -> None:
            # the row goes first: a crash between the two leaves an orphan directory, never a dangling row
            self.forget(vid)
            shutil.rmtree(path, ignore_errors=True)

        return cleanup

    def forget(self, version_id: int) -> None:
        """Called after a version is deleted; a subclass that caches loaded versions drops it here."""
