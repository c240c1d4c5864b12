"""Images of a project: checking and storing uploads, listing, reading stored ones back, deleting.

Size and pixel limits are checked before decoding (the header gives the size), so a decompression
bomb is refused without allocating its pixels; then the image is fully decoded once to refuse
truncated or corrupt files at upload instead of at first use. Files are content-addressed (SHA-256)
and shared between projects: a file is removed only when no image row references it any more.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ErrorCode, ServiceError
from core.files import IMAGE_SUFFIXES, StoredFiles
from core.orm import AnnotationRevision, Image, Project
from core.settings import Settings
from core.storage import atomic_write, sha256
from model.imageio import decode_image

from ..schemas.common import Page
from ..schemas.images import ImagePublic

FORMATS = IMAGE_SUFFIXES
MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclass
class CheckedImage:
    data: bytes
    format: str
    mode: str
    width: int
    height: int


def check_filename(name: str | None) -> str:
    """Display name of an upload: a plain file name (no directories, no '..')."""
    name = (name or "upload").strip()
    if not name or len(name) > 255 or any(c in name for c in "/\\\x00") or name in (".", "..") or ".." in name:
        raise ServiceError(ErrorCode.INVALID, f"file name must be a plain name without path parts, got {name!r}")
    return name


def check_image_bytes(data: bytes, settings: Settings) -> CheckedImage:
    if len(data) > settings.max_upload_bytes:
        raise ServiceError(ErrorCode.TOO_LARGE, f"upload of {len(data)} bytes exceeds the limit of "
                                                f"{settings.max_upload_bytes} bytes")
    if not data:
        raise ServiceError(ErrorCode.INVALID, "empty upload")
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            fmt, mode, (w, h) = im.format or "", im.mode, im.size
            if fmt not in FORMATS:
                raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA, f"image format {fmt or 'unknown'} is not supported; "
                                                                "send PNG, JPEG or TIFF")
            if w * h > settings.max_image_pixels:
                raise ServiceError(ErrorCode.TOO_LARGE, f"image of {w}x{h} = {w * h} pixels exceeds the limit of "
                                                        f"{settings.max_image_pixels} pixels")
            if mode not in MODES:
                raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA, f"image mode {mode} is not supported; send 8/16-bit "
                                                                "gray or RGB")
            if getattr(im, "n_frames", 1) > 1:
                raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA, "multi-frame images are not supported; upload "
                                                                "each frame or slice as its own image")
            im.load()
    except ServiceError:
        raise
    except PILImage.DecompressionBombError as e:
        raise ServiceError(ErrorCode.TOO_LARGE, f"image refused as a decompression bomb: {e}") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ServiceError(ErrorCode.UNSUPPORTED_MEDIA, f"cannot decode the upload as an image: {e}") from e
    return CheckedImage(data, fmt, mode, w, h)


def public(session: Session, image: Image) -> ImagePublic:
    """The row with its newest annotation revision number (None when unlabelled)."""
    rev = session.scalar(select(func.max(AnnotationRevision.revision)).where(AnnotationRevision.image_id == image.id))
    out = ImagePublic.model_validate(image)
    out.annotation_revision = rev
    return out


def page(session: Session, project_id: int, offset: int, limit: int) -> Page[ImagePublic]:
    total = session.scalar(select(func.count()).select_from(Image).where(Image.project_id == project_id)) or 0
    rows = session.scalars(select(Image).where(Image.project_id == project_id).order_by(Image.id)
                           .offset(offset).limit(limit))
    return Page(items=[public(session, i) for i in rows], total=int(total), offset=offset, limit=limit)


@dataclass(frozen=True)
class Upload:
    """A file a client sent: the name it gave and a stream, read only up to the size limit (+1 byte to
    tell an oversized upload from one of exactly the limit), so an oversized body is never held whole."""

    filename: str | None
    file: BinaryIO

    def read(self, limit: int) -> bytes:
        data = self.file.read(limit + 1)
        if len(data) > limit:
            raise ServiceError(ErrorCode.TOO_LARGE, f"upload exceeds the limit of {limit} bytes")
        return data


class ImageService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.files = StoredFiles(settings)
        self.blobs = self.files.images

    # ---- uploads --------------------------------------------------------------------------------
    def read(self, upload: Upload) -> bytes:
        return upload.read(self.settings.max_upload_bytes)

    def decode_upload(self, upload: Upload) -> np.ndarray:
        """An image sent for one request (not stored): checked like an upload, decoded as stored."""
        check_filename(upload.filename)
        return decode_image(check_image_bytes(self.read(upload), self.settings).data)

    def add(self, session: Session, project: Project, upload: Upload) -> Image:
        """Store the file (first, so a row never points to a missing file), then the row; the same content
        twice in one project is a 409 naming the existing image."""
        name = check_filename(upload.filename)
        checked = check_image_bytes(self.read(upload), self.settings)
        digest = sha256(checked.data)
        existing = session.scalar(select(Image.id).where(Image.project_id == project.id, Image.sha256 == digest))
        if existing is not None:
            raise ServiceError(ErrorCode.CONFLICT, f"this image is already in project {project.id} as image {existing}")
        self.blobs.put(checked.data, FORMATS[checked.format])
        image = Image(project_id=project.id, sha256=digest, filename=name, format=checked.format, mode=checked.mode,
                      width=checked.width, height=checked.height, size_bytes=len(checked.data))
        session.add(image)
        try:
            session.flush()
        except IntegrityError as e:  # the same upload raced us between the check and the insert
            raise ServiceError(ErrorCode.CONFLICT, f"this image is already in project {project.id}") from e
        return image

    # ---- reading ----------------------------------------------------------------------------------
    def original(self, image: Image) -> Path:
        """The file as uploaded; 503 when it has gone missing from storage."""
        path = self.path(image)
        if not path.is_file():
            raise ServiceError(ErrorCode.UNAVAILABLE, f"stored file of image {image.id} is missing")
        return path

    def path(self, image: Image) -> Path:
        return self.files.image_path(image)

    def array(self, image: Image) -> np.ndarray:
        return self.files.image_array(image)

    def rgb(self, image: Image) -> np.ndarray:
        """Display form (8-bit RGB, 16-bit rescaled) — the same conversion the model uses."""
        return self.files.image_rgb(image)

    def thumbnail(self, image: Image, size: int) -> Path:
        """An 8-bit RGB PNG whose longer side is at most ``size`` (capped by settings), cached by content."""
        size = min(size, self.settings.max_thumbnail_side)
        dest = self.settings.cache_dir / "thumbs" / f"{image.sha256}-{size}.png"
        if not dest.is_file():
            im = PILImage.fromarray(self.rgb(image))
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            atomic_write(dest, buf.getvalue())
        return dest

    # ---- deleting ---------------------------------------------------------------------------------
    def delete(self, session: Session, image: Image) -> None:
        """Delete the row and its annotation history and commit; then the file, unless another project's
        image has the same content (the row goes first, so a failed commit never loses a file)."""
        sha, fmt = image.sha256, image.format
        session.delete(image)
        session.commit()
        if session.scalar(select(Image.id).where(Image.sha256 == sha).limit(1)) is None:
            self.blobs.path(sha, FORMATS.get(fmt, "")).unlink(missing_ok=True)
