"""A tiny generated segmentation task: bright discs (class 1) and dark squares (class 2) on noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from model.data import ClassInfo, DatasetSplit, Sample


def toy_sample(i: int, size: int = 64) -> Sample:
    rng = np.random.default_rng(i)
    img = rng.normal(110, 12, (size, size)).clip(0, 255)
    dense = np.zeros((size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(16, size - 16, 2)
    disc = np.hypot(yy - cy, xx - cx) < 10
    img[disc] += 90
    dense[disc] = 1
    sy, sx = rng.integers(2, size - 14, 2)
    square = np.zeros_like(disc)
    square[sy:sy + 12, sx:sx + 12] = True
    square &= ~disc
    img[square] -= 80
    dense[square] = 2
    sparse = np.full_like(dense, 255)
    sparse[cy, cx - 5:cx + 5] = 1  # a short scribble through the disc
    sparse[sy + 6, sx + 2:sx + 10] = 2
    sparse[sparse == 2] = np.where(square[sparse == 2], 2, 255)
    sparse[2:4, 2:size - 2] = np.where(dense[2:4, 2:size - 2] == 0, 0, 255)  # background stroke
    rgb = np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return Sample(name=f"toy{i:02d}", image=rgb, sparse=sparse, dense=dense, group=f"g{i % 2}")


def toy_split(n: int = 8, size: int = 64) -> DatasetSplit:
    return DatasetSplit(ClassInfo(["background", "disc", "square"]), [toy_sample(i, size) for i in range(n)])


def write_toy_folder(root: Path, n: int = 8) -> Path:
    """The same task as a dataset folder (images/, labels/, masks/, classes.json, splits/)."""
    for sub in ("images", "labels", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        s = toy_sample(i)
        Image.fromarray(s.image[..., 0]).save(root / "images" / f"{s.name}.png")
        Image.fromarray(s.sparse).save(root / "labels" / f"{s.name}.png")
        Image.fromarray(s.dense).save(root / "masks" / f"{s.name}.png")
        names.append(s.name)
    (root / "classes.json").write_text(json.dumps({"names": ["background", "disc", "square"]}))
    (root / "splits" / "train.txt").write_text("\n".join(names[: n - 2]) + "\n")
    (root / "splits" / "val.txt").write_text("\n".join(names[n - 2:]) + "\n")
    return root
