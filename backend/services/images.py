"""Checking and storing uploaded images; reading stored ones back as arrays.

Size and pixel limits are checked before decoding (the header gives the size), so a decompression
bomb is refused without allocating its pixels; then the image is fully decoded once to refuse
truncated or corrupt files at upload instead of at first use.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from model.imageio import ImageReadError, read_image
from model.preprocess import to_rgb_array

from ..errors import ErrorCode, ServiceError
from ..orm import Image
from ..settings import Settings
from ..storage import LocalBlobStore

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif"}
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


def decode_array(data: bytes) -> np.ndarray:
    """Bytes of a checked image -> array as stored (the form ``Predictor`` accepts)."""
    with PILImage.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode in ("P", "PA", "1", "LA"):
            return np.asarray(im.convert("RGBA" if im.mode == "PA" else ("L" if im.mode in ("1", "LA") else "RGB")))
        return np.asarray(im)


class ImageStore:
    def __init__(self, settings: Settings) -> None:
        self.blobs = LocalBlobStore(settings.images_dir)

    def put(self, checked: CheckedImage) -> str:
        return self.blobs.put(checked.data, FORMATS[checked.format])

    def path(self, image: Image) -> Path:
        return self.blobs.path(image.sha256, FORMATS.get(image.format, ""))

    def array(self, image: Image) -> np.ndarray:
        try:
            return read_image(self.path(image))
        except ImageReadError as e:
            raise ServiceError(ErrorCode.UNAVAILABLE, f"stored file of image {image.id} is unreadable: {e}") from e

    def rgb(self, image: Image) -> np.ndarray:
        """Display form (8-bit RGB, 16-bit rescaled) — the same conversion the model uses."""
        return to_rgb_array(self.array(image))

    def thumbnail(self, image: Image, size: int, cache_dir: Path) -> Path:
        from ..storage import atomic_write

        dest = cache_dir / "thumbs" / f"{image.sha256}-{size}.png"
        if not dest.is_file():
            im = PILImage.fromarray(self.rgb(image))
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            atomic_write(dest, buf.getvalue())
        return dest
