"""Segmentation metrics: confusion matrix, IoU, Dice, pixel accuracy, and Dice per volume.

Per-volume Dice stacks the slices of one subject (``Sample.group``) before computing Dice, as the
MSCMR scribble papers (CycleMix, ScribFormer) report it; per-slice Dice would punish empty apical
slices. Pixels whose ground truth is 255 are ignored, so the same code scores dense masks and
held-out sparse labels.

``largest_component`` is the post-processing clinical pipelines apply (one heart has one LV, one RV
and one myocardium): per class keep only the largest connected component, in 3-D over the slices of
a subject when samples have a group, per image otherwise. It is an evaluation-time option
(``evaluate(..., lcc=True)``, ``sasformer eval --lcc``), reported separately from the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .config import IGNORE_INDEX


def largest_component(class_map: np.ndarray, classes: Iterable[int], fill: int = 0) -> np.ndarray:
    """Keep, for each class in ``classes``, only its largest connected component; the rest becomes ``fill``.

    ``class_map`` is ``(H, W)`` (one image) or ``(Z, H, W)`` (the slices of one volume, in order):
    components are face-connected in 2-D or 3-D accordingly (4- / 6-connectivity), so a structure
    is one object across neighbouring slices. Classes not listed (e.g. background) are untouched;
    ties keep the component met first in scan order. Returns a new array.
    """
    if class_map.ndim not in (2, 3):
        raise ValueError(f"class_map must be (H, W) or (Z, H, W), got shape {class_map.shape}")
    out = class_map.copy()
    for c in classes:
        labels, n = ndimage.label(class_map == c)
        if n <= 1:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        sizes[0] = 0
        keep = int(sizes.argmax())
        out[(labels != 0) & (labels != keep)] = fill
    return out


def _lcc_by_group(items: list[tuple[Any, str, np.ndarray]], classes: Sequence[int]) -> list[np.ndarray]:
    """LCC of each ``(group, name, prediction)``: in 3-D over each group's slices stacked in name order
    (MSCMR's ``subject_zNN``: zero-padded, so name order is slice order), in 2-D without a group."""
    out: list[np.ndarray | None] = [None] * len(items)
    groups: dict[Any, list[int]] = {}
    for i, (group, _, pred) in enumerate(items):
        if group is None:
            out[i] = largest_component(pred, classes)
        else:
            groups.setdefault(group, []).append(i)
    for idx in groups.values():
        idx = sorted(idx, key=lambda i: items[i][1])
        shapes = {items[i][2].shape for i in idx}
        if len(shapes) != 1:  # slices of different sizes cannot be stacked: fall back to 2-D
            for i in idx:
                out[i] = largest_component(items[i][2], classes)
            continue
        vol = largest_component(np.stack([items[i][2] for i in idx]), classes)
        for j, i in enumerate(idx):
            out[i] = vol[j]
    return [o for o in out if o is not None]


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """``(C, C)`` int64 counts, rows = ground truth, columns = prediction; ignored pixels skipped."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth shape {gt.shape}")
    valid = gt != ignore_index
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if g.size and (g.max() >= num_classes or p.max() >= num_classes):
        raise ValueError(f"class id out of range for {num_classes} classes "
                         f"(ground truth max {g.max()}, prediction max {p.max()})")
    return np.bincount(g * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_dice(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU and Dice; NaN for a class absent from both prediction and ground truth."""
    tp = np.diag(cm).astype(np.float64)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    return iou, dice


def _nanmean(v: np.ndarray) -> float:
    v = np.asarray(v, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")


@dataclass
class EvalReport:
    """All metrics of one evaluation; ``mean_*`` skip classes listed in ``exclude_from_mean``."""

    class_names: list[str]
    confusion: np.ndarray
    volume_confusions: dict[str, np.ndarray] = field(default_factory=dict)
    exclude_from_mean: tuple[int, ...] = ()

    def _keep(self) -> np.ndarray:
        keep = np.ones(len(self.class_names), bool)
        keep[list(self.exclude_from_mean)] = False
        return keep

    @property
    def iou(self) -> np.ndarray:
        return iou_dice(self.confusion)[0]

    @property
    def dice(self) -> np.ndarray:
        return iou_dice(self.confusion)[1]

    @property
    def miou(self) -> float:
        return _nanmean(self.iou[self._keep()])

    @property
    def mean_dice(self) -> float:
        return _nanmean(self.dice[self._keep()])

    @property
    def pixel_accuracy(self) -> float:
        total = self.confusion.sum()
        return float(np.trace(self.confusion) / total) if total else float("nan")

    @property
    def volume_dice(self) -> dict[str, np.ndarray]:
        """Per group: per-class Dice of the stacked slices."""
        return {g: iou_dice(cm)[1] for g, cm in self.volume_confusions.items()}

    @property
    def volume_dice_per_class(self) -> np.ndarray:
        """Per class: mean over volumes of the volume Dice."""
        if not self.volume_confusions:
            return np.full(len(self.class_names), np.nan)
        stacked = np.stack(list(self.volume_dice.values()))
        with np.errstate(invalid="ignore"):
            return np.array([_nanmean(stacked[:, c]) for c in range(stacked.shape[1])])

    @property
    def mean_volume_dice(self) -> float:
        return _nanmean(self.volume_dice_per_class[self._keep()])

    def metric(self, name: str) -> float:
        """One number by name, for model selection: miou, mean_dice, volume_dice, pixel_accuracy."""
        values = {"miou": lambda: self.miou, "mean_dice": lambda: self.mean_dice,
                  "volume_dice": lambda: self.mean_volume_dice, "pixel_accuracy": lambda: self.pixel_accuracy}
        if name not in values:
            raise ValueError(f"unknown metric {name!r}; expected one of {sorted(values)}")
        return values[name]()

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if not np.isfinite(v) else round(float(v), 6)

        out: dict[str, Any] = {
            "classes": self.class_names,
            "excluded_from_mean": [self.class_names[i] for i in self.exclude_from_mean],
            "miou": clean(self.miou),
            "mean_dice": clean(self.mean_dice),
            "pixel_accuracy": clean(self.pixel_accuracy),
            "per_class": {n: {"iou": clean(i), "dice": clean(d)}
                          for n, i, d in zip(self.class_names, self.iou, self.dice, strict=True)},
            "confusion_matrix": self.confusion.tolist(),
        }
        if self.volume_confusions:
            out["mean_volume_dice"] = clean(self.mean_volume_dice)
            out["volume_dice_per_class"] = {n: clean(v) for n, v in
                                            zip(self.class_names, self.volume_dice_per_class, strict=True)}
            out["volumes"] = {g: {n: clean(v) for n, v in zip(self.class_names, d, strict=True)}
                              for g, d in self.volume_dice.items()}
        return out


def accumulate(pairs: Iterable[tuple[np.ndarray, np.ndarray, str | None]], class_names: Sequence[str],
               exclude_from_mean: Sequence[int] = (), ignore_index: int = IGNORE_INDEX) -> EvalReport:
    """Build a report from ``(prediction, ground truth, group)`` triples."""
    n = len(class_names)
    total = np.zeros((n, n), np.int64)
    volumes: dict[str, np.ndarray] = {}
    for pred, gt, group in pairs:
        cm = confusion_matrix(pred, gt, n, ignore_index)
        total += cm
        if group is not None:
            volumes[group] = volumes.get(group, np.zeros((n, n), np.int64)) + cm
    return EvalReport(list(class_names), total, volumes, tuple(exclude_from_mean))


def evaluate(
    predictor: Any,
    samples: Iterable[Any],
    class_names: Sequence[str],
    target: str = "dense",
    flip: bool = False,
    scales: Sequence[float] = (1.0,),
    exclude_from_mean: Sequence[int] = (),
    on_prediction: Callable[[Any, np.ndarray], None] | None = None,
    lcc: bool = False,
    lcc_classes: Sequence[int] | None = None,
) -> EvalReport:
    """Predict every sample with a ``Predictor`` and score it against ``sample.<target>``.

    ``on_prediction(sample, class_map)`` lets callers write prediction images without a second pass
    (after post-processing). ``lcc`` keeps the largest connected component of each class in
    ``lcc_classes`` (default: every class but 0, the background), in 3-D over the slices of each
    ``Sample.group`` in name order, in 2-D for samples without a group. It needs every
    prediction of a group before scoring, so predictions are held in memory (uint8 maps).
    """

    def predict(s: Any) -> tuple[np.ndarray, np.ndarray]:
        gt = getattr(s, target)
        if gt is None:
            raise ValueError(f"sample {s.name} has no {target} ground truth to evaluate against")
        return predictor.predict(s.image, flip=flip, scales=scales).class_map, gt

    def pairs() -> Iterable[tuple[np.ndarray, np.ndarray, str | None]]:
        for s in samples:
            pred, gt = predict(s)
            if on_prediction is not None:
                on_prediction(s, pred)
            yield pred, gt, s.group

    if not lcc:
        return accumulate(pairs(), class_names, exclude_from_mean)
    keep = list(lcc_classes) if lcc_classes is not None else list(range(1, len(class_names)))
    items = [(s, *predict(s)) for s in samples]
    processed = _lcc_by_group([(s.group, s.name, pred) for s, pred, _ in items], keep)
    if on_prediction is not None:
        for (s, _, _), pred in zip(items, processed, strict=True):
            on_prediction(s, pred)
    return accumulate(((pred, gt, s.group) for (s, _, gt), pred in zip(items, processed, strict=True)),
                      class_names, exclude_from_mean)
