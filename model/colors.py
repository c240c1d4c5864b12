"""Class colours: the default palette of a model's classes and the hex form the API stores.

Parsing goes through ``PIL.ImageColor`` (so ``#abc``, ``#aabbcc`` and CSS names all work); the hex
form written back is always ``#rrggbb``, lower case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from PIL import ImageColor

RGB = tuple[int, int, int]


def default_palette(n: int) -> list[RGB]:
    """Distinct colours for n classes (PASCAL VOC's bit-interleaved palette), so a bundle always has colours."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


def rgb_color(color: str) -> RGB:
    """``"#rrggbb"`` (or any colour PIL understands) -> ``(r, g, b)``; ValueError names a bad value."""
    r, g, b = ImageColor.getrgb(color)[:3]
    return r, g, b


def hex_color(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb[:3]))


def class_colors(classes: Iterable[Mapping[str, Any]]) -> list[RGB]:
    """RGB colours of a project's class records (``{"name": ..., "color": "#rrggbb"}``), in class order."""
    return [rgb_color(c["color"]) for c in classes]
