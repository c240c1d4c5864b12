"""Reading what the API stored: image files (by content hash) and label PNGs (by revision).

The API writes these (uploads, annotation saves); the API and the worker read them back through
this one reader, so a fine-tune job sees exactly the pixels and labels ``/segment`` and the UI see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from model import IGNORE_INDEX
from model.imageio import ImageReadError, read_image
from model.preprocess import to_rgb_array

from .errors import ErrorCode, ServiceError
from .orm import AnnotationRevision, Image
from .settings import Settings
from .storage import LocalBlobStore

IMAGE_SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif"}


class StoredFiles:
    def __init__(self, settings: Settings) -> None:
        self.images = LocalBlobStore(settings.images_dir)
        self.labels = LocalBlobStore(settings.labels_dir)

    def image_path(self, image: Image) -> Path:
        return self.images.path(image.sha256, IMAGE_SUFFIXES.get(image.format, ""))

    def image_array(self, image: Image) -> np.ndarray:
        """The stored pixels as decoded (gray, 16-bit and RGB kept as they are)."""
        try:
            return read_image(self.image_path(image))
        except ImageReadError as e:
            raise ServiceError(ErrorCode.UNAVAILABLE, f"stored file of image {image.id} is unreadable: {e}") from e

    def image_rgb(self, image: Image) -> np.ndarray:
        """Display form (8-bit RGB, 16-bit rescaled): the same conversion the model uses."""
        return to_rgb_array(self.image_array(image))

    def label(self, row: AnnotationRevision | None, image: Image) -> np.ndarray:
        """``(H, W)`` class ids with 255 = unlabelled; all unlabelled when the image has no annotation."""
        if row is None:
            return np.full((image.height, image.width), IGNORE_INDEX, np.uint8)
        with PILImage.open(self.labels.path(row.label_sha256, ".png")) as im:
            return np.asarray(im).astype(np.uint8)
