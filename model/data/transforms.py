"""Paired image/label augmentation, as in SASFormer's training (mmseg-style pipeline).

Train time: random resize (scale uniform in ``[0.5, 2.0]`` of the image's own size), brightness
offset uniform in ``[-10, 10]`` on the 0-255 scale (clipped), optional contrast jitter for medical
images, horizontal flip with probability 0.5, then a random crop to ``crop_size`` (padding image with
0 and label with 255 at the bottom/right when it is smaller). Eval time: identity.

Optional (off by default): a small in-plane rotation about the image centre, as the scribble methods on
cardiac MRI use (WSL4MIS's generator rotates by up to 20 degrees): unseen subjects' hearts sit at other
angles than the training subjects'. Corners that rotate in are black in the image and unlabeled.

Sparse labels need care when shrinking: plain nearest-neighbour sampling drops a one-pixel scribble
or click with probability ~3/4 at 0.5x. ``resize_label`` therefore gives every output pixel whose
source footprint contains a labeled pixel a label, so no annotation is lost to a resize.

Randomness comes only from the ``np.random.Generator`` passed in, so the dataset can replay an
epoch's augmentations exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from model.config import IGNORE_INDEX


class Transform(Protocol):
    """``(image (H, W, 3) uint8, label (H, W) uint8, rng) -> (image, label)``, applied to both alike."""

    def __call__(
        self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]: ...


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an ``(H, W, 3)`` uint8 image to ``size = (h, w)`` (PIL, antialiased when shrinking)."""
    h, w = size
    if image.shape[:2] == (h, w):
        return image
    return np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((w, h), Image.Resampling.BILINEAR))


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output index, pixel-centre aligned like PIL's and the bilinear image resize."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def resize_label(label: np.ndarray, size: tuple[int, int], *, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Nearest-neighbour resize of an ``(H, W)`` label that never loses a labeled pixel.

    Output pixel ``(i, j)`` owns the source pixels ``(y, x)`` with ``y * h_out // h_in == i`` and
    ``x * w_out // w_in == j`` (its footprint). It takes the nearest source value; if that value is
    ``ignore_index`` but the footprint holds labeled pixels, it takes their majority class (ties: the
    lower class). For a dense label this is exactly nearest-neighbour.
    """
    h, w = label.shape
    oh, ow = size
    if (oh, ow) == (h, w):
        return label.copy()
    out = label[_nearest_index(h, oh)[:, None], _nearest_index(w, ow)[None, :]]
    if oh >= h and ow >= w:  # upscaling: nearest already covers every source pixel
        return out
    ys, xs = np.nonzero(label != ignore_index)
    if ys.size == 0:
        return out
    key = (ys * oh // h) * ow + xs * ow // w
    cls = label[ys, xs].astype(np.int64)
    lost = out.ravel()[key] == ignore_index
    if not lost.any():
        return out
    key, cls = key[lost], cls[lost]
    combo, counts = np.unique(key * 256 + cls, return_counts=True)
    keys, classes = combo // 256, combo % 256
    order = np.lexsort((-counts, keys))  # by output pixel, then most frequent class first
    keys, classes = keys[order], classes[order]
    first = np.r_[True, keys[1:] != keys[:-1]]
    out.flat[keys[first]] = classes[first]
    return out


def pad_to(
    image: np.ndarray, label: np.ndarray, size: tuple[int, int], *, ignore_index: int = IGNORE_INDEX
) -> tuple[np.ndarray, np.ndarray]:
    """Pad bottom/right to at least ``size``: image with 0 (black), label with ``ignore_index``."""
    h, w = label.shape
    ph, pw = max(0, size[0] - h), max(0, size[1] - w)
    if not (ph or pw):
        return image, label
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=0)
    label = np.pad(label, ((0, ph), (0, pw)), constant_values=ignore_index)
    return image, label


def rotate_pair(image: np.ndarray, label: np.ndarray, degrees: float, *,
                ignore_index: int = IGNORE_INDEX) -> tuple[np.ndarray, np.ndarray]:
    """Rotate image (bilinear) and label (nearest) together about the centre, counter-clockwise, same size.

    Nearest sampling keeps a thin scribble thin: a rotation preserves area, so a one-pixel line keeps about
    as many pixels as it had (a few move by one pixel), and no class value is ever blended into another.
    """
    img = Image.fromarray(np.ascontiguousarray(image)).rotate(
        degrees, resample=Image.Resampling.BILINEAR, fillcolor=(0,) * image.shape[2] if image.ndim == 3 else 0)
    lab = Image.fromarray(np.ascontiguousarray(label)).rotate(
        degrees, resample=Image.Resampling.NEAREST, fillcolor=ignore_index)
    return np.asarray(img), np.asarray(lab)


@dataclass
class TrainTransform:
    """SASFormer's train-time augmentation (see the module docstring).

    Attributes:
        crop_size: output ``(h, w)`` (or one int for a square).
        scale_range: resize factor range, drawn uniformly.
        hflip_prob: probability of a horizontal flip.
        brightness: maximum absolute intensity offset on the 0-255 scale.
        contrast: maximum relative contrast change around the image mean (``0`` = off); MRI
            intensities vary between scanners, which this imitates.
        rotate_deg: maximum absolute rotation angle in degrees (``0`` = off, the default).
        rotate_prob: probability of rotating a sample when ``rotate_deg > 0``.
        crop_tries: crops drawn until one contains a labeled pixel (when the label has any), so
            sparse clicks do not make most crops label-free; ``1`` = plain random crop.
        ignore_index: label value of unlabeled / padded pixels.
    """

    crop_size: int | tuple[int, int]
    scale_range: tuple[float, float] = (0.5, 2.0)
    hflip_prob: float = 0.5
    brightness: float = 10.0
    contrast: float = 0.0
    rotate_deg: float = 0.0
    rotate_prob: float = 0.5
    crop_tries: int = 10
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        c = self.crop_size
        self.crop_size = (int(c), int(c)) if isinstance(c, int) else (int(c[0]), int(c[1]))
        if min(self.crop_size) < 1:
            raise ValueError(f"crop_size must be positive, got {self.crop_size}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {self.scale_range}")
        if self.crop_tries < 1:
            raise ValueError(f"crop_tries must be >= 1, got {self.crop_tries}")
        if not 0.0 <= self.rotate_deg <= 180.0:
            raise ValueError(f"rotate_deg must be in [0, 180], got {self.rotate_deg}")
        if not 0.0 <= self.rotate_prob <= 1.0:
            raise ValueError(f"rotate_prob must be in [0, 1], got {self.rotate_prob}")

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if image.shape[:2] != label.shape:
            raise ValueError(f"image {image.shape[:2]} and label {label.shape} differ in size")
        scale = rng.uniform(*self.scale_range)
        h, w = label.shape
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        image = resize_image(image, size)
        label = resize_label(label, size, ignore_index=self.ignore_index)
        if self.rotate_deg > 0 and rng.random() < self.rotate_prob:  # no draw when off: old runs replay exactly
            image, label = rotate_pair(image, label, rng.uniform(-self.rotate_deg, self.rotate_deg),
                                       ignore_index=self.ignore_index)
        image = self._photometric(image, rng)
        if rng.random() < self.hflip_prob:
            image, label = image[:, ::-1], label[:, ::-1]
        image, label = self._crop(image, label, rng)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = image.astype(np.float32)
        if self.contrast > 0:
            factor = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
            mean = out.mean()
            out = (out - mean) * factor + mean
        if self.brightness > 0:
            out += rng.uniform(-self.brightness, self.brightness)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def _crop(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ch, cw = self.crop_size  # type: ignore[misc]
        image, label = pad_to(image, label, (ch, cw), ignore_index=self.ignore_index)
        h, w = label.shape
        has_labels = bool((label != self.ignore_index).any())
        for _ in range(self.crop_tries):
            y0, x0 = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            crop = label[y0 : y0 + ch, x0 : x0 + cw]
            if not has_labels or (crop != self.ignore_index).any():
                break
        return image[y0 : y0 + ch, x0 : x0 + cw], crop


@dataclass
class EvalTransform:
    """Evaluation: images are seen as they are (the predictor handles padding to the network stride)."""

    def __call__(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return image, label
