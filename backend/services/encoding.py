"""Class maps and heatmaps to wire formats: palette PNG, COCO RLE, base64 arrays."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image as PILImage
from pycocotools import mask as mask_utils

from model.imageio import heatmap_overlay, save_palette_png


def palette_png(class_map: np.ndarray, colors: list[tuple[int, int, int]]) -> bytes:
    """Class ids stay pixel values (255 = unlabeled stays 255); viewers show the class colours."""
    buf = io.BytesIO()
    save_palette_png(class_map, colors, buf)
    return buf.getvalue()


def rgb_png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Binary (H, W) mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (pycocotools)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)


def rle_per_class(class_map: np.ndarray, names: list[str]) -> list[dict[str, Any]]:
    """One RLE per class present, with its pixel area and bounding box (COCO's xywh)."""
    out = []
    for cid, name in enumerate(names):
        m = class_map == cid
        if not m.any():
            continue
        rle = rle_encode(m)
        bbox = [float(v) for v in mask_utils.toBbox({"size": rle["size"], "counts": rle["counts"].encode()})]
        out.append({"class_id": cid, "name": name, "area": int(m.sum()), "bbox": bbox, "rle": rle})
    return out


def array_b64(a: np.ndarray, dtype: str = "float16") -> dict[str, Any]:
    """A float array as ``{"dtype", "shape", "data": base64 of little-endian C-order bytes}``."""
    arr = np.ascontiguousarray(a.astype(np.dtype(dtype).newbyteorder("<")))
    return {"dtype": dtype, "shape": list(arr.shape), "data": base64.b64encode(arr.tobytes()).decode("ascii")}


def heatmap_overlay_png(rgb: np.ndarray, heat: np.ndarray, opacity: float) -> bytes:
    """Heatmap blended over the image (paper Fig. 3 style)."""
    return rgb_png(heatmap_overlay(rgb, heat, opacity))


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()
