"""Segmentation metrics: confusion matrix, IoU, Dice, pixel accuracy, and Dice per volume.

Per-volume Dice stacks the slices of one subject (``Sample.group``) before computing Dice, as the
MSCMR scribble papers (CycleMix, ScribFormer) report it; per-slice Dice would punish empty apical
slices. Pixels whose ground truth is 255 are ignored, so the same code scores dense masks and
held-out sparse labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import IGNORE_INDEX


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
) -> EvalReport:
    """Predict every sample with a ``Predictor`` and score it against ``sample.<target>``.

    ``on_prediction(sample, class_map)`` lets callers write prediction images without a second pass.
    """

    def pairs() -> Iterable[tuple[np.ndarray, np.ndarray, str | None]]:
        for s in samples:
            gt = getattr(s, target)
            if gt is None:
                raise ValueError(f"sample {s.name} has no {target} ground truth to evaluate against")
            pred = predictor.predict(s.image, flip=flip, scales=scales).class_map
            if on_prediction is not None:
                on_prediction(s, pred)
            yield pred, gt, s.group

    return accumulate(pairs(), class_names, exclude_from_mean)
