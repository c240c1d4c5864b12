"""Reading images and writing label maps, with errors that name the file.

The one decoder of image files and bytes (the CLI, the API and the web UI all call ``read_image`` or
``decode_image``), and the one heatmap ramp and blend (CLI, API and UI show the same colours).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

# Refuse decompression bombs loudly rather than letting Pillow warn and carry on.
MAX_IMAGE_PIXELS = 100_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS


class ImageReadError(ValueError):
    """An input image that cannot be read; the message names the file."""


def _as_stored(source: str | Path | BinaryIO, name: str) -> np.ndarray:
    try:
        with Image.open(source) as opened:
            opened.load()
            im: Image.Image = opened
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1", "LA"):
                im = im.convert("RGBA" if "A" in im.mode else ("L" if im.mode in ("1", "LA") else "RGB"))
            return np.asarray(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise ImageReadError(f"cannot read image {name}: {e}") from e


def read_image(path: str | Path) -> np.ndarray:
    """Image file -> array as stored (gray ``(H, W)`` or RGB(A) ``(H, W, C)``, 8- or 16-bit).

    Palette, bilevel and other colour spaces become RGB(A) or gray; 16-bit gray stays 16-bit, so
    ``preprocess.to_rgb_array`` can rescale it the way the model was trained.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"image not found: {path}")
    return _as_stored(path, str(path))


def decode_image(data: bytes, name: str = "upload") -> np.ndarray:
    """Encoded image bytes (an upload, an HTTP body) -> array as stored, exactly as ``read_image``
    would return for the same bytes in a file; ``name`` is what an ImageReadError calls it."""
    return _as_stored(io.BytesIO(data), name)


def save_palette_png(class_map: np.ndarray, colors: list[tuple[int, int, int]], path: str | Path | BinaryIO) -> None:
    """Class map -> paletted PNG (a path or a binary file object): pixel values stay class ids
    (255 = unlabeled stays 255), viewers show class colours."""
    im = Image.fromarray(class_map.astype(np.uint8), mode="P")
    flat = [v for c in colors for v in c]
    im.putpalette(flat + [0] * (768 - len(flat)))
    im.save(path, format="PNG")


def colorize(class_map: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Class map -> RGB array (ids outside the palette, e.g. 255, become black)."""
    lut = np.zeros((256, 3), np.uint8)
    lut[: len(colors)] = np.asarray(colors, np.uint8)
    return lut[class_map]


def overlay(image_rgb: np.ndarray, class_map: np.ndarray, colors: list[tuple[int, int, int]],
            opacity: float = 0.5) -> np.ndarray:
    return (image_rgb * (1 - opacity) + colorize(class_map, colors) * opacity).astype(np.uint8)


def heatmap_rgb(heat: np.ndarray) -> np.ndarray:
    """Non-negative map -> RGB with a perceptual ramp (black-red-yellow-white), max-normalised."""
    h = heat / heat.max() if heat.max() > 0 else heat
    r = np.clip(h * 3, 0, 1)
    g = np.clip(h * 3 - 1, 0, 1)
    b = np.clip(h * 3 - 2, 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


def heatmap_overlay(image_rgb: np.ndarray, heat: np.ndarray, opacity: float) -> np.ndarray:
    """``heatmap_rgb(heat)`` blended over an ``(H, W, 3)`` uint8 image at ``opacity`` (0 = image only);
    ``heat`` must have the image's height and width."""
    hm = heatmap_rgb(heat).astype(np.float32)
    out = image_rgb.astype(np.float32) * (1 - opacity) + hm * opacity
    return np.clip(out, 0, 255).astype(np.uint8)
