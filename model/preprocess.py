"""The one place where images become network inputs.

Training data, the ``Predictor``, the backend and the benchmarks all call these functions, so a
model always sees pixels normalised the way it was trained.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

ImageLike = np.ndarray | Image.Image


def to_rgb_array(image: ImageLike) -> np.ndarray:
    """Return an ``(H, W, 3)`` uint8 array from a PIL image or array (gray, gray+alpha, RGB, RGBA, 16-bit).

    16-bit and float images are rescaled by their own min/max, since their raw range carries no
    display meaning (MRI, remote sensing); 8-bit images are kept as they are.
    """
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            arr = np.asarray(image)
        else:
            arr = np.asarray(image.convert("RGB") if image.mode not in ("L", "RGB") else image)
    else:
        arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3 and arr.shape[2] == 2:  # gray + alpha
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected a gray (H, W) or colour (H, W, 3|4) image, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = arr.astype(np.float64)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        arr = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr)


def normalize(
    image: np.ndarray | torch.Tensor, mean: Sequence[float], std: Sequence[float]
) -> torch.Tensor:
    """``(H, W, 3)`` uint8 (or a batch ``(B, H, W, 3)``) -> float ``(3, H, W)`` / ``(B, 3, H, W)`` tensor."""
    if isinstance(image, np.ndarray) and not image.flags.writeable:
        image = image.copy()  # torch cannot wrap read-only memory (e.g. np.asarray of a PIL image)
    t = torch.as_tensor(image)
    t = t.permute(0, 3, 1, 2) if t.ndim == 4 else t.permute(2, 0, 1)
    t = t.float().div_(255.0)
    m = torch.tensor(mean, dtype=t.dtype).view(-1, 1, 1)
    s = torch.tensor(std, dtype=t.dtype).view(-1, 1, 1)
    return (t - m) / s


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Zero-pad a ``(..., H, W)`` tensor on the bottom/right to a multiple; returns it and the original size.

    MiT's overlapping patch embeddings accept any size, but spatial-reduction convs floor odd grids;
    padding to the output stride keeps every stage's grid an exact divisor of the input.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = torch.nn.functional.pad(x, (0, pw, 0, ph))
    return x, (h, w)
