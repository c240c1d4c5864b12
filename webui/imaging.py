"""Pixel conversions of the UI: editor layers <-> label maps, overlays, legends, heatmaps.

Everything the model decides (predictions, attention, propagated labels) comes from the API; this
module only turns arrays into what the browser shows and back. Image decoding and heatmaps are
``model.imageio``'s and ``model.preprocess.to_rgb_array``'s, so gray and 16-bit images look exactly as the
model sees them and heatmaps have the API's colours.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np
from PIL import Image

from model.imageio import colorize, decode_image, heatmap_overlay
from model.predictor import Prediction
from model.preprocess import to_rgb_array

UNLABELED = 255
# Anti-aliased stroke edges are partly transparent: below half opacity a pixel is not a label.
ALPHA_THRESHOLD = 128


def hex_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def palette(classes: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    return [hex_rgb(c["color"]) for c in classes]


def decode_rgb(data: bytes) -> np.ndarray:
    """Image bytes -> 8-bit RGB at full resolution, as the model sees it (gray, 16-bit, RGBA)."""
    return to_rgb_array(decode_image(data))


def decode_class_map(png: bytes) -> np.ndarray:
    """Paletted (or gray) label PNG -> (H, W) uint8 class ids."""
    with Image.open(io.BytesIO(png)) as im:
        im.load()
        if im.mode not in ("P", "L"):
            raise ValueError(f"expected a paletted or gray label PNG, got mode {im.mode}")
        return np.asarray(im).copy()


def encode_label_png(label: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(label.astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def label_to_layer(label: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Label map -> RGBA editor layer: class colour, opaque where labelled, transparent elsewhere."""
    rgba = np.zeros((*label.shape, 4), np.uint8)
    rgba[..., :3] = colorize(label, colors)
    rgba[..., 3] = np.where(label == UNLABELED, 0, 255)
    return rgba


def snap_to_classes(rgba: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """RGBA layer -> label map. Every pixel of at least half opacity becomes the class whose colour is
    nearest (so anti-aliased or blended stroke edges never become a wrong or invented class)."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) RGBA layer, got shape {rgba.shape}")
    label = np.full(rgba.shape[:2], UNLABELED, np.uint8)
    on = rgba[..., 3] >= ALPHA_THRESHOLD
    if on.any():
        pal = np.asarray(colors, np.int32)  # (C, 3)
        px = rgba[on][:, :3].astype(np.int32)  # (N, 3)
        d = ((px[:, None, :] - pal[None, :, :]) ** 2).sum(-1)
        label[on] = d.argmin(1).astype(np.uint8)
    return label


def _resize_nearest(a: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == hw:
        return a
    return np.asarray(Image.fromarray(a).resize((hw[1], hw[0]), Image.Resampling.NEAREST))


def editor_label(value: dict[str, Any] | None, hw: tuple[int, int], colors: list[tuple[int, int, int]]) -> np.ndarray:
    """ImageEditor value ``{background, layers, composite}`` -> label map of the image's size.
    Layers are stacked in order (a later layer's stroke wins); layers of another size (a canvas that was
    scaled) are resized with nearest neighbour so no blended colours appear."""
    label = np.full(hw, UNLABELED, np.uint8)
    for layer in (value or {}).get("layers") or []:
        if layer is None:
            continue
        arr = np.asarray(layer)
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = np.concatenate([arr, np.full((*arr.shape[:2], 1), 255, np.uint8)], -1)
        arr = _resize_nearest(arr.astype(np.uint8), hw)
        layer_label = snap_to_classes(arr, colors)
        painted = layer_label != UNLABELED
        label[painted] = layer_label[painted]
    return label


def paint_points(label: np.ndarray, points: list[dict[str, Any]]) -> np.ndarray:
    """Burn pending clicks (disks of ``radius``) into a label map."""
    out = label.copy()
    h, w = out.shape
    yy, xx = np.ogrid[:h, :w]
    for p in points:
        r = int(p.get("radius", 0))
        out[(yy - p["y"]) ** 2 + (xx - p["x"]) ** 2 <= r * r] = p["class_id"]
    return out


def class_overlay(rgb: np.ndarray, class_map: np.ndarray, colors: list[tuple[int, int, int]], opacity: float,
                  visible: set[int] | None = None) -> np.ndarray:
    """Blend class colours over the image; classes not in ``visible`` (and 255) stay uncovered.

    Through a ``[class, channel, value]`` lookup table of the blended values: the same numbers as blending in
    float32 per pixel, 8x faster (7 vs 56 ms at 512x512), and this runs on the save -> live mask path."""
    n = len(colors)
    lut = np.empty((256, 3, 256), np.uint8)
    lut[:] = np.arange(256, dtype=np.uint8)  # identity: unlabelled, hidden classes, ids outside the palette
    col = np.asarray(colors, np.float32).reshape(n, 3, 1)
    blended = (np.arange(256, dtype=np.float32) * (1 - opacity) + col * opacity).astype(np.uint8)
    shown = [c for c in range(n) if visible is None or c in visible]
    lut[shown] = blended[shown]
    cls = class_map.astype(np.intp)
    out = np.empty_like(rgb)
    for ch in range(3):
        out[..., ch] = lut[cls, ch, rgb[..., ch]]
    return out


def mark_points(rgb: np.ndarray, points: list[dict[str, Any]], colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Draw pending clicks as class-coloured dots with a white ring, visible on any background."""
    out = rgb.copy()
    h, w = out.shape[:2]
    yy, xx = np.ogrid[:h, :w]
    s = max(3, round(max(h, w) / 150))
    for p in points:
        d2 = (yy - p["y"]) ** 2 + (xx - p["x"]) ** 2
        out[d2 <= (s + 2) ** 2] = (255, 255, 255)
        out[d2 <= s * s] = colors[p["class_id"]]
    return out


def mark_cross(rgb: np.ndarray, x: int, y: int) -> np.ndarray:
    """A cyan cross at the query pixel of the attention explorer."""
    out = rgb.copy()
    h, w = out.shape[:2]
    s = max(4, round(max(h, w) / 60))
    out[max(0, y - 1):y + 2, max(0, x - s):x + s + 1] = (0, 255, 255)
    out[max(0, y - s):y + s + 1, max(0, x - 1):x + 2] = (0, 255, 255)
    return out


def legend_html(classes: list[dict[str, Any]], areas: dict[str, int] | None = None,
                visible: set[int] | None = None) -> str:
    """Swatch, name and (when given) area in pixels and percent of each class."""
    total = sum((areas or {}).values()) or 1
    rows = []
    for c in classes:
        name = html.escape(c["name"])
        hidden = visible is not None and c["id"] not in visible
        area = ""
        if areas is not None:
            a = int(areas.get(c["name"], 0))
            area = f"<td style='text-align:right'>{a:,} px</td><td style='text-align:right'>{100 * a / total:.1f}%</td>"
        rows.append(
            f"<tr style='opacity:{0.4 if hidden else 1}'><td><span style='display:inline-block;width:14px;"
            f"height:14px;border:1px solid #444;background:{c['color']}'></span></td>"
            f"<td>{c['id']}</td><td>{name}</td>{area}</tr>")
    head = "<th></th><th>id</th><th>class</th>" + ("<th>area</th><th>share</th>" if areas is not None else "")
    return f"<table class='sf-legend'><tr>{head}</tr>{''.join(rows)}</table>"


def decode_b64_array(obj: dict[str, Any]) -> np.ndarray:
    """The API's ``{dtype, shape, data}`` base64 arrays -> NumPy."""
    return np.frombuffer(base64.b64decode(obj["data"]), dtype=np.dtype(obj["dtype"]).newbyteorder("<")
                         ).reshape(obj["shape"]).astype(np.float32)


def entropy_view(rgb: np.ndarray, probs: np.ndarray, opacity: float = 0.65) -> tuple[np.ndarray, float, float]:
    """Per-pixel entropy (``Prediction.entropy``, nats) as a heatmap over the image, with its mean and
    the maximum possible value (log C) so the colours can be read as 'how unsure'."""
    ent = Prediction(class_map=probs.argmax(0).astype(np.uint8), probs=probs).entropy()
    return heatmap_overlay(rgb, ent, opacity), float(ent.mean()), float(np.log(probs.shape[0]))
