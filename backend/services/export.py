"""Project exports: predicted masks (PNG zip, COCO JSON with RLE) and sparse labels with provenance."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.orm import Image, ModelVersion, Project
from model.colors import class_colors

from .annotations import AnnotationService
from .encoding import palette_png, rle_per_class
from .images import ImageService
from .predictions import PredictionService
from .registry import ModelRegistry


def _images(session: Session, project: Project) -> Iterator[Image]:
    yield from session.scalars(select(Image).where(Image.project_id == project.id).order_by(Image.id))


def _entry_name(image: Image, suffix: str) -> str:
    return f"{image.id:06d}_{PurePath(image.filename).stem}{suffix}"


def _categories(project: Project) -> list[dict[str, Any]]:
    # COCO reserves 0 for "no category" in many tools: category id = class id + 1
    return [{"id": c["id"] + 1, "name": c["name"], "supercategory": "", "class_id": c["id"], "color": c["color"]}
            for c in project.classes]


@dataclass(frozen=True)
class ExportFile:
    """A download: its file name and bytes."""

    name: str
    data: bytes

    @property
    def disposition(self) -> dict[str, str]:
        return {"Content-Disposition": f'attachment; filename="{self.name}"'}


class Exporter:
    def __init__(self, registry: ModelRegistry, images: ImageService, predictions: PredictionService,
                 annotations: AnnotationService) -> None:
        self.registry = registry
        self.images = images
        self.predictions = predictions
        self.annotations = annotations

    def _predictions(self, session: Session, project: Project, version: ModelVersion) -> Iterator[tuple[Image, Any]]:
        model = self.registry.loaded(version)
        for image in _images(session, project):
            pred, _ = self.predictions.segment(model, self.images.array(image), image_sha=image.sha256)
            yield image, pred.class_map

    def masks_zip(self, session: Session, project: Project, number: int | None = None) -> ExportFile:
        """Predictions of version ``number`` (default the active one): palette PNG per image + manifest.json."""
        version = self.registry.resolve(session, project, number)
        colors = class_colors(project.classes)
        buf = io.BytesIO()
        manifest: dict[str, Any] = {"project": project.name, "model_version": version.number,
                                    "classes": project.classes, "exported_at": datetime.now(UTC).isoformat(),
                                    "images": []}
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for image, class_map in self._predictions(session, project, version):
                name = _entry_name(image, ".png")
                zf.writestr(f"masks/{name}", palette_png(class_map, colors))
                manifest["images"].append({"image_id": image.id, "filename": image.filename, "mask": f"masks/{name}"})
            zf.writestr("manifest.json", json.dumps(manifest, indent=2, default=str))
        return ExportFile(f"project{project.id}-masks-v{version.number}.zip", buf.getvalue())

    def coco(self, session: Session, project: Project, source: Literal["prediction", "labels"] = "prediction",
             number: int | None = None) -> dict[str, Any]:
        """COCO instances JSON, one RLE annotation per (image, class): predictions of version ``number``
        (default the active one), or the sparse labels (latest revisions; ``number`` is ignored)."""
        version = self.registry.resolve(session, project, number) if source == "prediction" else None
        names = [c["name"] for c in project.classes]
        images_out: list[dict[str, Any]] = []
        anns: list[dict[str, Any]] = []
        if version is not None:
            pairs: Iterator[tuple[Image, Any]] = self._predictions(session, project, version)
        else:
            pairs = ((im, self.annotations.label(row, im)) for im in _images(session, project)
                     if (row := self.annotations.latest(session, im.id)) is not None)
        for image, class_map in pairs:
            images_out.append({"id": image.id, "file_name": image.filename, "width": image.width,
                               "height": image.height})
            for m in rle_per_class(class_map, names):
                anns.append({"id": len(anns) + 1, "image_id": image.id, "category_id": m["class_id"] + 1,
                             "segmentation": m["rle"], "area": m["area"], "bbox": m["bbox"], "iscrowd": 0})
        what = f"model version {version.number}" if version is not None else "sparse labels (latest revisions)"
        return {
            "info": {"description": f"SASFormer Studio export of project {project.name!r}: {what}",
                     "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
                     "model_version": version.number if version is not None else None},
            "licenses": [], "images": images_out, "annotations": anns, "categories": _categories(project),
        }

    def labels_zip(self, session: Session, project: Project) -> ExportFile:
        """Latest label PNG per annotated image + labels.json with every revision's author, time and edits."""
        buf = io.BytesIO()
        records = []
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for image in _images(session, project):
                history = self.annotations.history(session, image.id)
                if not history:
                    continue
                name = _entry_name(image, ".png")
                zf.writestr(f"labels/{name}", self.annotations.label_png(history[-1], project))
                records.append({
                    "image_id": image.id, "filename": image.filename, "sha256": image.sha256, "label": f"labels/{name}",
                    "revision": history[-1].revision,
                    "revisions": [{"revision": r.revision, "author": r.author, "kind": r.kind,
                                   "created_at": r.created_at.isoformat(), "labeled_pixels": r.labeled_pixels,
                                   "class_counts": r.class_counts, "strokes": r.strokes, "points": r.points}
                                  for r in history],
                })
            zf.writestr("labels.json", json.dumps({"project": project.name, "classes": project.classes,
                                                   "unlabeled_value": 255, "images": records}, indent=2))
        return ExportFile(f"project{project.id}-labels.zip", buf.getvalue())
