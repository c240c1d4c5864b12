"""File readers shared by every loader, each turning a failure into a ``DatasetError`` naming the file.

Loaders differ only in layout; reading a file, checking it against its image and its class count, and
parsing split lists are the same everywhere, so they live here once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.config import IGNORE_INDEX
from model.data.errors import DatasetError
from model.preprocess import to_rgb_array

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


def list_images(folder: Path) -> dict[str, Path]:
    """``{stem: path}`` of the images in ``folder``; two files with one stem are ambiguous, so an error."""
    if not folder.is_dir():
        raise DatasetError(folder, "image folder not found")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            if path.stem in found:
                raise DatasetError(path, f"two images share the name {path.stem!r} (also {found[path.stem].name})")
            found[path.stem] = path
    return found


def read_image(path: Path) -> np.ndarray:
    """``(H, W, 3)`` uint8 via ``to_rgb_array``, so gray MRI and RGB photos reach the model alike."""
    try:
        with Image.open(path) as im:
            im.load()
            return to_rgb_array(im)
    except FileNotFoundError as err:
        raise DatasetError(path, "image file not found") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(path, f"unreadable image ({err})") from err


def read_label(
    path: Path,
    *,
    num_classes: int | None,
    shape: tuple[int, int] | None = None,
    remap: dict[int, int] | None = None,
) -> np.ndarray:
    """A single-channel class-index PNG as ``(H, W)`` uint8, checked against its image and class count.

    ``remap`` rewrites raw values first (CamVid's void 11 -> 255). Values must then be a class
    (``< num_classes``) or ``IGNORE_INDEX``; anything else would silently train a wrong class.
    ``num_classes=None`` skips the range check (used while inferring the class count).
    """
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            arr = np.asarray(im)
    except FileNotFoundError as err:
        raise DatasetError(path, "label file not found") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(path, f"unreadable label image ({err})") from err
    if arr.ndim != 2:
        raise DatasetError(path, f"label must be a single-channel class-index image (mode L or P), got mode {mode}")
    if shape is not None and arr.shape != tuple(shape):
        raise DatasetError(path, f"label is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image is {shape[1]}x{shape[0]}")
    arr = arr.astype(np.int64)
    if remap:
        out = arr.copy()
        for src, dst in remap.items():
            out[arr == src] = dst
        arr = out
    if num_classes is not None:
        check_classes(arr, num_classes, path)
    elif arr.min() < 0 or arr.max() > IGNORE_INDEX:
        raise DatasetError(path, f"label values must be 0..{IGNORE_INDEX}, found {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def check_classes(label: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise unless every value is a class index or ``IGNORE_INDEX``."""
    bad = ((label >= num_classes) & (label != IGNORE_INDEX)) | (label < 0)
    if bad.any():
        ys, xs = np.nonzero(bad)
        values = sorted({int(v) for v in np.unique(label[bad])})
        raise DatasetError(
            path,
            f"{int(bad.sum())} pixels have class values {values[:10]} outside 0..{num_classes - 1} "
            f"(and {IGNORE_INDEX} = unlabeled), first at x={int(xs[0])}, y={int(ys[0])}",
        )


def read_json(path: Path) -> Any:
    """Parsed JSON, with the line and column of a syntax error in the message."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise DatasetError(path, "file not found") from err
    except json.JSONDecodeError as err:
        raise DatasetError(path, f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}") from err
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"unreadable ({err})") from err


def read_split(path: Path, available: dict[str, Path]) -> list[str]:
    """Names listed in a split file, in file order, each checked to have an image.

    Blank lines and ``#`` comments are skipped and an image extension is tolerated, since split files
    are often written by hand or by ``ls``.
    """
    if not path.is_file():
        others = sorted(p.stem for p in path.parent.glob("*.txt")) if path.parent.is_dir() else []
        raise DatasetError(path, f"split file not found (available splits: {others or 'none'})")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(path, f"unreadable split file ({err})") from err
    names: list[str] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(lines, start=1):
        name = raw.split("#", 1)[0].strip()
        if not name:
            continue
        if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
            name = Path(name).stem
        if name not in available:
            raise DatasetError(path, f"line {lineno} names {name!r}, which has no image")
        if name in seen:
            raise DatasetError(path, f"line {lineno} repeats {name!r}")
        seen.add(name)
        names.append(name)
    return names


def select_names(root: Path, split: str | None, available: dict[str, Path]) -> list[str]:
    """The split's names from ``root/splits/<split>.txt``, or every image (sorted) when ``split`` is None.

    A named split whose file is missing is an error rather than "all images": silently evaluating on
    the training images would be worse than stopping.
    """
    if split is None:
        return sorted(available)
    return read_split(root / "splits" / f"{split}.txt", available)
