"""Sparse labels: rasterising strokes and points, checking label PNGs, storing revisions.

A label is an (H, W) uint8 map of class ids with 255 = unlabeled (``model.IGNORE_INDEX``), the
format ``model.data`` trains from. Strokes are drawn with Pillow's ImageDraw; every save writes a
new content-addressed label PNG and a new revision row, so history is never overwritten.
Optimistic concurrency: the ETag is the revision; a write must name it in If-Match once one exists.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import after_commit
from core.errors import ErrorCode, ServiceError
from core.files import StoredFiles
from core.orm import AnnotationRevision, Image, Project
from core.settings import Settings
from core.storage import LocalBlobStore
from model import IGNORE_INDEX
from model.colors import class_colors

from ..schemas.annotations import AnnotationEdit, AnnotationPublic, Point, RevisionPublic, Stroke
from .encoding import palette_png
from .lookup import project_or_404


def etag_for(image_id: int, revision: int) -> str:
    return f'"img{image_id}-r{revision}"'


def public(image: Image, row: AnnotationRevision) -> AnnotationPublic:
    return AnnotationPublic(
        image_id=image.id, revision=row.revision, etag=etag_for(image.id, row.revision), author=row.author,
        kind=row.kind, created_at=row.created_at, width=image.width, height=image.height,
        labeled_pixels=row.labeled_pixels, class_counts=row.class_counts,
        strokes=[Stroke.model_validate(s) for s in row.strokes], points=[Point.model_validate(p) for p in row.points],
    )


def revision_public(row: AnnotationRevision) -> RevisionPublic:
    return RevisionPublic(revision=row.revision, author=row.author, kind=row.kind, created_at=row.created_at,
                          labeled_pixels=row.labeled_pixels, class_counts=row.class_counts)


def check_class(class_id: int, num_classes: int, what: str) -> None:
    if class_id != IGNORE_INDEX and not 0 <= class_id < num_classes:
        raise ServiceError(ErrorCode.INVALID, f"{what}: class_id {class_id} is out of range for a project with "
                                              f"{num_classes} classes (0..{num_classes - 1}, or 255 to erase)")


def check_inside(x: float, y: float, w: int, h: int, what: str) -> None:
    if not (0 <= x < w and 0 <= y < h) or not (np.isfinite(x) and np.isfinite(y)):
        raise ServiceError(ErrorCode.INVALID, f"{what}: point ({x}, {y}) is outside the image of size {w}x{h}")


def rasterise(label: np.ndarray, edit: AnnotationEdit, num_classes: int) -> np.ndarray:
    """Draw strokes (round-capped polylines) then points onto a copy of ``label``."""
    h, w = label.shape
    for i, s in enumerate(edit.strokes):
        check_class(s.class_id, num_classes, f"stroke {i}")
        for x, y in s.points:
            check_inside(x, y, w, h, f"stroke {i}")
    for i, p in enumerate(edit.points):
        check_class(p.class_id, num_classes, f"point {i}")
        check_inside(p.x, p.y, w, h, f"point {i}")
    im = PILImage.fromarray(label.copy(), mode="L")
    draw = ImageDraw.Draw(im)
    for s in edit.strokes:
        xy = [(float(x), float(y)) for x, y in s.points]
        if len(xy) > 1:
            draw.line(xy, fill=s.class_id, width=s.width, joint="curve")
        r = (s.width - 1) / 2
        if r >= 1 or len(xy) == 1:  # round caps (and a dot for a single-point stroke)
            for x, y in (xy[0], xy[-1]):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=s.class_id)
    for p in edit.points:
        if p.radius == 0:
            draw.point((int(p.x), int(p.y)), fill=p.class_id)
        else:
            draw.ellipse((p.x - p.radius, p.y - p.radius, p.x + p.radius, p.y + p.radius), fill=p.class_id)
    return np.asarray(im)


def decode_label_png(data: bytes, width: int, height: int, num_classes: int) -> np.ndarray:
    """A label PNG from a client: same size as the image, values class ids or 255."""
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            if im.format != "PNG":
                raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA, f"label must be a PNG, got {im.format}")
            if im.size != (width, height):
                raise ServiceError(ErrorCode.INVALID, f"label is {im.size[0]}x{im.size[1]} but the image is "
                                                      f"{width}x{height}")
            if im.mode not in ("L", "P"):
                raise ServiceError(ErrorCode.INVALID, f"label PNG must be 8-bit gray or paletted (class ids as "
                                                      f"pixel values), got mode {im.mode}")
            im.load()
            arr = np.asarray(im).astype(np.uint8)
    except ServiceError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA, f"cannot decode the label PNG: {e}") from e
    bad = np.unique(arr[(arr != IGNORE_INDEX) & (arr >= num_classes)])
    if bad.size:
        raise ServiceError(ErrorCode.INVALID, f"label has class ids {bad[:10].tolist()} out of range for a project "
                                              f"with {num_classes} classes (0..{num_classes - 1}, 255 = unlabeled)")
    return arr


LabelSaved = Callable[[int, int], object]
"""Told ``(project_id, image_id)`` after a save has committed: live refit, train-on-submit."""


class AnnotationService:
    def __init__(self, settings: Settings) -> None:
        self.blobs = LocalBlobStore(settings.labels_dir)
        self.files = StoredFiles(settings)
        self.on_saved: list[LabelSaved] = []

    def _notify(self, project_id: int, image_id: int) -> None:
        for listener in self.on_saved:
            listener(project_id, image_id)

    def latest(self, session: Session, image_id: int) -> AnnotationRevision | None:
        return session.scalar(select(AnnotationRevision).where(AnnotationRevision.image_id == image_id)
                              .order_by(AnnotationRevision.revision.desc()).limit(1))

    def current(self, session: Session, image: Image) -> AnnotationRevision:
        """The newest revision; 404 when the image has none yet."""
        row = self.latest(session, image.id)
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"image {image.id} has no annotation yet")
        return row

    def revision(self, session: Session, image_id: int, revision: int) -> AnnotationRevision:
        row = session.scalar(select(AnnotationRevision).where(AnnotationRevision.image_id == image_id,
                                                              AnnotationRevision.revision == revision))
        if row is None:
            raise ServiceError(ErrorCode.NOT_FOUND, f"image {image_id} has no annotation revision {revision}")
        return row

    def history(self, session: Session, image_id: int) -> list[AnnotationRevision]:
        return list(session.scalars(select(AnnotationRevision).where(AnnotationRevision.image_id == image_id)
                                    .order_by(AnnotationRevision.revision)))

    def label(self, row: AnnotationRevision | None, image: Image) -> np.ndarray:
        return self.files.label(row, image)

    def label_png(self, row: AnnotationRevision, project: Project) -> bytes:
        return self.blobs.read(row.label_sha256, ".png")

    @staticmethod
    def check_precondition(current: AnnotationRevision | None, image_id: int, if_match: str | None) -> None:
        """412 when If-Match names another revision; 428 when a revision exists and If-Match is missing."""
        if if_match is None:
            if current is not None:
                raise ServiceError(ErrorCode.PRECONDITION_REQUIRED,
                                   f"image {image_id} already has annotation revision {current.revision}; send "
                                   f"If-Match: {etag_for(image_id, current.revision)} (from GET) to overwrite it")
            return
        tags = [t.strip().removeprefix("W/") for t in if_match.split(",")]
        if "*" in tags:
            if current is None:
                raise ServiceError(ErrorCode.PRECONDITION_FAILED, "If-Match: * but the image has no annotation yet")
            return
        have = etag_for(image_id, current.revision) if current is not None else None
        if have not in tags:
            raise ServiceError(ErrorCode.PRECONDITION_FAILED,
                               f"annotation changed: If-Match {if_match} does not match the current "
                               f"{have or 'state (no annotation yet)'}; GET it again and re-apply your edit",
                               headers={"ETag": have} if have else None)

    def write(self, session: Session, image: Image, *, author: str, if_match: str | None, kind: str,
              edit: AnnotationEdit | None = None, png: bytes | None = None) -> AnnotationRevision:
        """A new revision from an edit or a label PNG, after the If-Match check. ``kind``: "strokes" draws
        ``edit`` on an empty label, "patch" over the current one, "png" takes ``png`` as the label."""
        project = project_or_404(session, image.project_id)
        current = self.latest(session, image.id)
        self.check_precondition(current, image.id, if_match)
        n = len(project.classes)
        if png is not None:
            label = decode_label_png(png, image.width, image.height, n)
            edit = AnnotationEdit()
        else:
            assert edit is not None
            base = self.label(current if kind == "patch" else None, image)
            label = rasterise(base, edit, n)
        return self.save(session, project, image, label, author=author, kind=kind, strokes=edit.strokes,
                         points=edit.points, current=current)

    def save(self, session: Session, project: Project, image: Image, label: np.ndarray, *, author: str, kind: str,
             strokes: list[Stroke], points: list[Point], current: AnnotationRevision | None) -> AnnotationRevision:
        names = [c["name"] for c in project.classes]
        colors = class_colors(project.classes)
        counts = np.bincount(label.ravel(), minlength=256)
        digest = self.blobs.put(palette_png(label, colors), ".png")  # file first, then the row
        row = AnnotationRevision(
            image_id=image.id, revision=(current.revision if current else 0) + 1, label_sha256=digest,
            author=author, kind=kind, strokes=[s.model_dump() for s in strokes],
            points=[p.model_dump() for p in points], labeled_pixels=int(label.size - counts[IGNORE_INDEX]),
            class_counts={n: int(counts[i]) for i, n in enumerate(names)},
        )
        session.add(row)
        try:
            session.flush()
        except IntegrityError as e:  # another writer took this revision number between our read and write
            session.rollback()
            raise ServiceError(ErrorCode.PRECONDITION_FAILED,
                               "annotation changed concurrently; GET it again and re-apply your edit") from e
        project_id, image_id = project.id, image.id
        after_commit(session, lambda: self._notify(project_id, image_id))
        return row

    def labeled_image_count(self, session: Session, project_id: int) -> int:
        latest = (select(AnnotationRevision.image_id, func.max(AnnotationRevision.revision).label("rev"))
                  .join(Image, Image.id == AnnotationRevision.image_id)
                  .where(Image.project_id == project_id).group_by(AnnotationRevision.image_id).subquery())
        q = (select(func.count()).select_from(AnnotationRevision)
             .join(latest, (AnnotationRevision.image_id == latest.c.image_id)
                   & (AnnotationRevision.revision == latest.c.rev))
             .where(AnnotationRevision.labeled_pixels > 0))
        return int(session.scalar(q) or 0)

