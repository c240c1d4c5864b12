"""Which labelled pixels a fine-tune job keeps out of training, to validate and to decide promotion.

Rule (deterministic, documented in docs/architecture.md): each image is cut into square blocks of
``block_size(H, W) = max(8, round(min(H, W) / 16))`` pixels; a block is held out when a uniform draw
from ``numpy.random.default_rng([seed, crc32(image sha256)])`` (one draw per block, raster order) is
below ``fraction``. Every labelled pixel inside a held-out block is a validation pixel, every other
labelled pixel trains.

Why blocks and not random pixels: a held-out pixel right next to a training pixel of the same stroke
would be scored almost for free; a block removes whole stretches of a scribble. Why keyed by image
content and seed, not by the labels: the split of an image never changes when the user draws more,
so a version trained by an earlier job (same seed) never saw today's held-out pixels and the
comparison between the active and the new version is fair.

Two guards keep small projects trainable: a class whose every labelled pixel fell into held-out
blocks goes back to training (in every image), and so does everything when no training pixel is left.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from model import IGNORE_INDEX


def block_size(height: int, width: int) -> int:
    return max(8, round(min(height, width) / 16))


def heldout_mask(shape: tuple[int, int], key: str, fraction: float, seed: int) -> np.ndarray:
    """Boolean ``(H, W)``: True where pixels are held out (whole blocks)."""
    h, w = shape
    if fraction <= 0:
        return np.zeros((h, w), bool)
    b = block_size(h, w)
    rng = np.random.default_rng([int(seed), zlib.crc32(key.encode())])
    blocks = rng.random((-(-h // b), -(-w // b))) < fraction
    return blocks[(np.arange(h) // b)[:, None], (np.arange(w) // b)[None, :]]


@dataclass
class Split:
    """Per image: the training label and the held-out label (both 255 = unlabeled)."""

    train: list[np.ndarray]
    heldout: list[np.ndarray]
    restored_classes: list[int] = field(default_factory=list)
    restored_all: bool = False

    @property
    def heldout_pixels(self) -> int:
        return int(sum((h != IGNORE_INDEX).sum() for h in self.heldout))

    @property
    def train_pixels(self) -> int:
        return int(sum((t != IGNORE_INDEX).sum() for t in self.train))


def split_labels(labels: list[np.ndarray], keys: list[str], fraction: float, seed: int) -> Split:
    """Split every image's sparse label into training and held-out pixels (see the module docstring)."""
    train, held = [], []
    for label, key in zip(labels, keys, strict=True):
        mask = heldout_mask(label.shape, key, fraction, seed) & (label != IGNORE_INDEX)
        held.append(np.where(mask, label, IGNORE_INDEX).astype(np.uint8))
        train.append(np.where(mask, IGNORE_INDEX, label).astype(np.uint8))
    labelled = set().union(*(np.unique(x[x != IGNORE_INDEX]).tolist() for x in labels)) if labels else set()
    trained = set().union(*(np.unique(x[x != IGNORE_INDEX]).tolist() for x in train)) if train else set()
    restored = sorted(labelled - trained)
    for c in restored:  # a class seen only in held-out blocks would never be learned: train on it
        for i, h in enumerate(held):
            back = h == c
            train[i][back] = c
            h[back] = IGNORE_INDEX
    split = Split(train, held, restored_classes=[int(c) for c in restored])
    if split.train_pixels == 0 and labels:
        return Split([x.copy() for x in labels], [np.full_like(x, IGNORE_INDEX) for x in labels], restored_all=True)
    return split
