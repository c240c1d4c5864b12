"""MSCMR scribble dataset (cardiac LGE MRI slices, CycleMix release) as ``DatasetSplit`` s.

The training split has real human scribbles and no dense masks; the validation split has dense
expert masks and no scribbles. Sparse labels for validation, if needed, come from ``simulate``.
Slices are named ``<subject>_z<slice>``; the subject becomes ``Sample.group`` so evaluation can
rebuild 3-D volumes (the literature reports Dice per volume).
"""

from __future__ import annotations

from pathlib import Path

from model.data.errors import DatasetError
from model.data.readers import list_images, read_image, read_label, select_names
from model.data.sample import ClassInfo, DatasetSplit, Sample

MSCMR_CLASSES = ClassInfo(
    names=["background", "RV", "Myo", "LV"],
    colors=[(0, 0, 0), (230, 60, 60), (60, 200, 90), (60, 110, 240)],
)


def subject_of(name: str) -> str:
    """``subject13_z05`` -> ``subject13``."""
    subject, sep, _ = name.rpartition("_z")
    return subject if sep else name


def load_mscmr(root: str | Path, split: str | None) -> DatasetSplit:
    """Load ``split`` (``train``, ``val``; ``None`` = every slice) from an ``mscmr_scribble`` folder.

    ``scribbles/<name>.png`` becomes ``Sample.sparse`` and ``masks/<name>.png`` ``Sample.dense``
    wherever the file exists, so the loader does not hard-code which split has which.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(root, "MSCMR folder not found")
    images = list_images(root / "images")
    n = MSCMR_CLASSES.num_classes
    samples = []
    for name in select_names(root, split, images):
        image = read_image(images[name])
        shape = image.shape[:2]
        scribble, mask = root / "scribbles" / f"{name}.png", root / "masks" / f"{name}.png"
        samples.append(
            Sample(
                name=name,
                image=image,
                sparse=read_label(scribble, num_classes=n, shape=shape) if scribble.is_file() else None,
                dense=read_label(mask, num_classes=n, shape=shape) if mask.is_file() else None,
                group=subject_of(name),
            )
        )
    return DatasetSplit(classes=MSCMR_CLASSES, samples=samples, split=split, source=f"mscmr:{root}")
