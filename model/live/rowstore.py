"""The sampled training rows of each labelled image, kept on disk so that a restart does not featurise again.

Why: the live head is fitted on a few thousand sampled labelled pixels per image, but getting them means the
filter bank of the whole image (1.5-3 s for 512x512 on 2 cores) and, with a trained model, an encoder pass.
The service keeps nothing in memory across a restart, so the first live mask of a 20-image project took
37-60 s (docs/PERFORMANCE.md). The rows themselves are small (~1-2 MB per image, float16): stored here,
a restart reads them in milliseconds and only the image being predicted is featurised.

An entry is valid only for the exact inputs that produced it: its ``digest`` covers the image's pixels,
the labels, the feature settings and the encoder version (``LiveSegmenter._digest``). A mismatch is a miss,
never a wrong row. One file per image key: a new save of the image replaces it, so the store grows with the
number of labelled images, not with the number of saves. Writes are atomic (temp file + rename); a file
that cannot be read is treated as a miss and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger("sasformer.live")


class RowStore:
    """Directory of ``<hash of image key>.npz`` files, each holding one image's rows and their digest."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, image_key: str) -> Path:
        return self.root / (hashlib.blake2b(image_key.encode(), digest_size=16).hexdigest() + ".npz")

    def load(self, image_key: str, digest: str) -> dict[str, np.ndarray] | None:
        """The arrays saved for ``image_key`` under ``digest``; ``None`` when absent, stale or unreadable."""
        path = self._path(image_key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["digest"]) != digest:
                    return None
                return {k: npz[k] for k in npz.files if k != "digest"}
        except (OSError, ValueError, KeyError) as e:  # a torn or foreign file: recompute and overwrite it
            log.warning("live: unreadable row file %s (%s); featurising again", path, e)
            return None

    def save(self, image_key: str, digest: str, arrays: dict[str, np.ndarray]) -> None:
        """Store ``arrays`` for ``image_key`` (replacing what was there), atomically. A full disk or a
        read-only directory costs the next restart a featurisation, nothing else: logged, not raised."""
        path = self._path(image_key)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".rows-", suffix=".npz")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, digest=np.array(digest), **arrays)  # type: ignore[arg-type]
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except OSError as e:
            log.warning("live: could not store the rows of image %s in %s (%s)", image_key, self.root, e)

    def remove(self, image_key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(image_key).unlink()


__all__ = ["RowStore"]
