"""Running the served model: segmentation (cached per image and model version), attention, Y_l.

The cache is on disk under ``cache/predictions/<version id>/`` keyed by the image's SHA-256 and
the TTA options, so it survives restarts and is dropped with nothing more than a directory when a
version is deleted. Arrays are stored as compressed ``.npz`` written atomically.
"""

from __future__ import annotations

import io
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import ErrorCode, ServiceError
from core.settings import Settings
from core.storage import atomic_write
from model import Prediction

from .registry import LoadedModel

MAX_SCALES = 4


def parse_scales(text: str | None) -> tuple[float, ...]:
    if text is None or not text.strip():
        return (1.0,)
    try:
        scales = tuple(float(s) for s in text.split(","))
    except ValueError as e:
        raise ServiceError(ErrorCode.INVALID, f"scales must be comma-separated numbers, got {text!r}") from e
    if len(scales) > MAX_SCALES or not all(0.25 <= s <= 2.0 for s in scales):
        raise ServiceError(ErrorCode.INVALID, f"scales: at most {MAX_SCALES} values in 0.25..2.0, got {text!r}")
    return scales


class PredictionService:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.cache_dir / "predictions"
        # seconds of the calling thread's last Predictor.predict, for the Server-Timing header
        self.last_predict_s = threading.local()

    def predict_ms(self) -> float:
        return float(getattr(self.last_predict_s, "value", 0.0)) * 1000

    def _cache_path(self, version_id: int, image_sha: str, flip: bool, scales: Sequence[float]) -> Path:
        tta = ("f" if flip else "n") + "-" + "_".join(f"{s:g}" for s in scales)
        return self.root / str(version_id) / f"{image_sha}-{tta}.npz"

    def segment(self, model: LoadedModel, image: np.ndarray, *, flip: bool = False,
                scales: Sequence[float] = (1.0,), image_sha: str | None = None) -> tuple[Prediction, bool]:
        """The prediction and whether it came from the cache (only stored images, keyed by SHA, are cached)."""
        path = None
        self.last_predict_s.value = 0.0
        if image_sha is not None and self.settings.prediction_cache:
            path = self._cache_path(model.version_id, image_sha, flip, scales)
            if path.is_file():
                try:
                    with np.load(path) as z:
                        return Prediction(z["class_map"], z["probs"].astype(np.float32)), True
                except (OSError, ValueError, KeyError):
                    path.unlink(missing_ok=True)  # unreadable cache entry: recompute
        t0 = time.perf_counter()
        pred = model.predictor.predict(image, flip=flip, scales=scales)  # the Predictor serialises forwards
        self.last_predict_s.value = time.perf_counter() - t0
        if path is not None:
            buf = io.BytesIO()
            np.savez_compressed(buf, class_map=pred.class_map, probs=pred.probs.astype(np.float16))
            atomic_write(path, buf.getvalue())
        return pred, False

    def attention(self, model: LoadedModel, image: np.ndarray, x: int, y: int) -> dict[str, np.ndarray]:
        h, w = image.shape[:2]
        if not (0 <= x < w and 0 <= y < h):
            raise ServiceError(ErrorCode.INVALID, f"query point ({x}, {y}) is outside the image of size {w}x{h}")
        return model.predictor.attention_maps(image, (x, y))

    def propagated(self, model: LoadedModel, image: np.ndarray, stage: str) -> Prediction:
        return model.predictor.propagated_labels(image, stage)

    def drop_version(self, version_id: int) -> None:
        shutil.rmtree(self.root / str(version_id), ignore_errors=True)
