"""The generic dataset folder: what users (and the web UI) provide for their own data.

Layout under ``root``::

    images/<name>.<png|jpg|jpeg|tif|tiff>   the images (required)
    labels/<name>.png      sparse labels: class index per pixel, 255 = unlabeled (optional)
    points.json            clicks {"<name>": [{"x": 12, "y": 30, "cls": 1}, ...]} (optional)
    masks/<name>.png       dense ground truth for evaluation, 255 = void (optional)
    classes.json           {"names": [...], "colors": [[r, g, b], ...]} (colors optional)
    splits/<split>.txt     one name per line (optional; needed only to ask for a split)

Clicks are drawn as single pixels into the sparse label; when an image has both a label PNG and
clicks, the clicks are drawn over the PNG (a click is a deliberate correction). Click coordinates are
pixel indices (x = column, y = row); fractional ones are rounded to the nearest pixel.

Without ``classes.json`` the class count is inferred from *all* labels, masks and clicks of the
folder, not only the requested split, so that every split agrees on it; names are then ``class_<i>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from model.config import IGNORE_INDEX
from model.data.errors import DatasetError
from model.data.readers import list_images, read_image, read_json, read_label, select_names
from model.data.sample import ClassInfo, DatasetSplit, Sample

Point = tuple[int, int, int]  # (x, y, cls)


def load_folder(root: str | Path, split: str | None = None) -> DatasetSplit:
    """Load ``split`` (``None`` = every image) of a dataset folder; see the module docstring for the layout.

    Raises:
        DatasetError: naming the offending file, for a missing root or ``images/``, an unreadable
            image, bad JSON, a label of another size than its image, a class value out of range, a
            split naming a missing image, or a click outside its image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "dataset folder not found")
    images = list_images(root / "images")
    if not images:
        raise DatasetError(root / "images", "no images (.png, .jpg, .jpeg, .tif, .tiff) found")
    points_path = root / "points.json"
    points = _read_points(points_path, images) if points_path.is_file() else {}
    classes = _read_classes(root / "classes.json") if (root / "classes.json").is_file() else None
    if classes is None:
        classes = ClassInfo.default(_infer_num_classes(root, points))
    n = classes.num_classes
    for name, pts in points.items():
        for x, y, cls in pts:
            if not (0 <= cls < n or cls == IGNORE_INDEX):
                raise DatasetError(points_path, f"point ({x}, {y}) of {name!r} has class {cls}, outside 0..{n - 1}")

    samples = []
    for name in select_names(root, split, images):
        image = read_image(images[name])
        shape = image.shape[:2]
        sparse = _optional_label(root / "labels" / f"{name}.png", n, shape)
        if name in points:
            sparse = _draw_points(sparse, points[name], shape, name, points_path)
        dense = _optional_label(root / "masks" / f"{name}.png", n, shape)
        samples.append(Sample(name=name, image=image, sparse=sparse, dense=dense))
    return DatasetSplit(classes=classes, samples=samples, split=split, source=str(root))


def _optional_label(path: Path, num_classes: int, shape: tuple[int, int]) -> np.ndarray | None:
    return read_label(path, num_classes=num_classes, shape=shape) if path.is_file() else None


def _read_classes(path: Path) -> ClassInfo:
    data = read_json(path)
    if isinstance(data, list):  # a bare list of names is the obvious shorthand
        data = {"names": data}
    if not isinstance(data, dict) or not isinstance(data.get("names"), list):
        raise DatasetError(path, 'expected {"names": [...], "colors": [[r, g, b], ...]}')
    try:
        return ClassInfo(names=data["names"], colors=data.get("colors") or [])
    except (TypeError, ValueError) as err:
        raise DatasetError(path, str(err)) from err


def _read_points(path: Path, images: dict[str, Path]) -> dict[str, list[Point]]:
    """Parse clicks; names are checked against the images so a typo is not silently dropped."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise DatasetError(path, 'expected {"<image name>": [{"x": .., "y": .., "cls": ..}, ...]}')
    out: dict[str, list[Point]] = {}
    for name, pts in data.items():
        stem = Path(name).stem if Path(name).stem in images else name
        if stem not in images:
            raise DatasetError(path, f"points given for {name!r}, which has no image")
        if not isinstance(pts, list):
            raise DatasetError(path, f"points of {name!r} must be a list")
        out[stem] = [_parse_point(p, name, path) for p in pts]
    return out


def _parse_point(p: Any, name: str, path: Path) -> Point:
    try:
        return int(round(float(p["x"]))), int(round(float(p["y"]))), int(p["cls"])
    except (TypeError, KeyError, ValueError) as err:
        raise DatasetError(path, f"point {p!r} of {name!r} needs numeric 'x', 'y' and 'cls'") from err


def _draw_points(
    sparse: np.ndarray | None, points: list[Point], shape: tuple[int, int], name: str, path: Path
) -> np.ndarray:
    out = np.full(shape, IGNORE_INDEX, np.uint8) if sparse is None else sparse.copy()
    h, w = shape
    for x, y, cls in points:
        if not (0 <= x < w and 0 <= y < h):
            raise DatasetError(path, f"point (x={x}, y={y}) of {name!r} lies outside its {w}x{h} (WxH) image")
        out[y, x] = cls
    return out


def _infer_num_classes(root: Path, points: dict[str, list[Point]]) -> int:
    top = -1
    for sub in ("labels", "masks"):
        folder = root / sub
        if folder.is_dir():
            for path in sorted(folder.glob("*.png")):
                lab = read_label(path, num_classes=None)
                valid = lab[lab != IGNORE_INDEX]
                if valid.size:
                    top = max(top, int(valid.max()))
    for pts in points.values():
        top = max([top, *(c for _, _, c in pts if c != IGNORE_INDEX)])
    if top < 0:
        raise DatasetError(root / "classes.json", "missing, and no labels to infer the classes from")
    if top >= IGNORE_INDEX - 1:
        raise DatasetError(root / "classes.json", f"missing, and labels use class {top}; at most 254 classes")
    return top + 1
