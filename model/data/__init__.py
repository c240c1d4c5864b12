"""Datasets for sparse-label segmentation: loading, simulated sparse labels, augmentation, torch Dataset.

Loaders return a ``DatasetSplit`` of ``Sample`` s (image, sparse training label, dense evaluation
mask, group) whatever the layout on disk; ``load_dataset("camvid:<root>", "train")`` picks the
loader from a string. Dataset problems raise ``DatasetError`` naming the offending file.
"""

from model.data.camvid import CAMVID_CLASSES, load_camvid
from model.data.dataset import SparseSegDataset
from model.data.errors import DatasetError
from model.data.folder import load_folder
from model.data.mscmr import MSCMR_CLASSES, load_mscmr
from model.data.registry import load_dataset, parse_spec
from model.data.sample import ClassInfo, DatasetSplit, Sample
from model.data.simulate import (
    labeled_fraction,
    report,
    simulate_dataset,
    simulate_points,
    simulate_scribbles,
)
from model.data.transforms import (
    EvalTransform,
    TrainTransform,
    Transform,
    resize_image,
    resize_label,
    rotate_pair,
)

__all__ = [
    "CAMVID_CLASSES",
    "MSCMR_CLASSES",
    "ClassInfo",
    "DatasetError",
    "DatasetSplit",
    "EvalTransform",
    "Sample",
    "SparseSegDataset",
    "TrainTransform",
    "Transform",
    "labeled_fraction",
    "load_camvid",
    "load_dataset",
    "load_folder",
    "load_mscmr",
    "parse_spec",
    "report",
    "resize_image",
    "resize_label",
    "rotate_pair",
    "simulate_dataset",
    "simulate_points",
    "simulate_scribbles",
]
