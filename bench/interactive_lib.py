"""Pieces of the interactive quality benchmark (bench/interactive.py) that can be tested on their own.

* ``RFPeer``: the ilastik-style peer. Features are scikit-image's ``multiscale_basic_features``
  (Gaussian-smoothed intensity, Sobel edges of it, Hessian eigenvalues, sigma 1..16), the classifier
  is scikit-learn's ``RandomForestClassifier``, fitted and applied with ``skimage.future``'s
  ``fit_segmenter`` / ``predict_segmenter`` -- the "trainable segmentation" example, i.e. library
  code, not our re-implementation, so the peer is the method users would otherwise run.
* The simulated annotator: ``initial_scribbles`` (one scribble per class), ``error_scribble`` (one
  scribble along the skeleton of the largest connected wrong region, with its true class) and
  ``uncertainty_scribble`` (the model picks its largest high-entropy region; the annotator labels it
  with the true class). All three draw with the project's own simulator
  (``model.data.simulate_scribbles``), so a scribble here is the same object as in training.
* ``score``: mIoU / mean Dice of class maps against dense masks with ``model.evaluate``.
* ``PeakRSS``: peak resident memory of one arm of the benchmark, in-process. Linux lets a process
  reset its own high-water mark (``/proc/self/clear_refs`` <- ``5``), so each arm's ``VmHWM`` is its
  own peak without paying a subprocess (and a torch import) per arm. Where that file is not writable
  a 20 ms sampling thread takes over (documented in the result as ``rss_method``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from skimage.feature import multiscale_basic_features
from skimage.future import fit_segmenter, predict_segmenter
from sklearn.ensemble import RandomForestClassifier

from model.config import IGNORE_INDEX
from model.data import simulate_scribbles
from model.evaluate import accumulate

_EIGHT = np.ones((3, 3), dtype=bool)


# ---- memory --------------------------------------------------------------------------------------
def _status_kb(key: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status in kB; None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class PeakRSS:
    """Context manager: peak RSS (MB) of the process while the block ran, and its growth over the start.

    ``method`` says how it was measured: ``hwm`` (kernel high-water mark, reset on entry: exact) or
    ``sampled`` (a thread reading VmRSS every 20 ms: can miss spikes shorter than that).
    """

    def __init__(self) -> None:
        self.start_mb = 0.0
        self.peak_mb = float("nan")
        self.method = "hwm"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sampled_kb = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._sampled_kb = max(self._sampled_kb, _status_kb("VmRSS") or 0)
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self.start_mb = (_status_kb("VmRSS") or 0) / 1024
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.method = "sampled"
            self._sampled_kb = _status_kb("VmRSS") or 0
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.method == "hwm":
            self.peak_mb = (_status_kb("VmHWM") or 0) / 1024
        else:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
            self.peak_mb = max(self._sampled_kb, _status_kb("VmRSS") or 0) / 1024

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb


# ---- the random-forest peer ----------------------------------------------------------------------
@dataclass
class RFSettings:
    """Random forest and feature settings. Defaults: ilastik's forest size (100 trees), unlimited depth,
    scikit-image's example feature set; one job, because every arm of the benchmark gets one thread."""

    n_estimators: int = 100
    max_depth: int | None = None
    max_samples: float | None = None
    sigma_min: float = 1.0
    sigma_max: float = 16.0
    n_jobs: int = 1
    seed: int = 0


def rf_features(image: np.ndarray, gray: bool, settings: RFSettings) -> np.ndarray:
    """``(H, W, F)`` float32 features; a gray image (3 equal channels) is featurised once, not thrice."""
    img = image[..., 0] if gray else image
    feats = multiscale_basic_features(
        img, intensity=True, edges=True, texture=True, sigma_min=settings.sigma_min,
        sigma_max=settings.sigma_max, channel_axis=None if gray else -1)
    return feats.astype(np.float32, copy=False)


@dataclass
class RFPeer:
    """Fit on the labeled pixels of any number of images, predict class maps of any image.

    ``fit_segmenter`` wants one label image with 0 = unlabeled and one feature stack, so the images of a
    project are stacked along the rows (equal widths; both datasets here have one image size) and our
    labels shifted by one (255 -> 0, class c -> c + 1).
    """

    settings: RFSettings = field(default_factory=RFSettings)
    clf: RandomForestClassifier | None = None

    def fit(self, features: Sequence[np.ndarray], sparse: Sequence[np.ndarray]) -> RFPeer:
        labels = np.concatenate([np.where(s == IGNORE_INDEX, 0, s.astype(np.int32) + 1) for s in sparse], axis=0)
        if not labels.any():
            raise ValueError("no labeled pixel to fit the random forest on")
        stacked = np.concatenate(list(features), axis=0)
        s = self.settings
        clf = RandomForestClassifier(n_estimators=s.n_estimators, max_depth=s.max_depth, max_samples=s.max_samples,
                                     n_jobs=s.n_jobs, random_state=s.seed)
        self.clf = fit_segmenter(labels, stacked, clf)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if self.clf is None:
            raise RuntimeError("fit the random forest before predicting")
        return (predict_segmenter(features, self.clf) - 1).astype(np.uint8)


# ---- metrics -------------------------------------------------------------------------------------
def score(preds: Sequence[np.ndarray], gts: Sequence[np.ndarray], class_names: Sequence[str],
          exclude: Sequence[int] = ()) -> dict[str, float]:
    """mIoU and mean Dice over the pooled confusion matrix (classes absent from both skipped)."""
    rep = accumulate(((p, g, None) for p, g in zip(preds, gts, strict=True)), class_names, exclude)
    return {"miou": rep.miou, "mean_dice": rep.mean_dice}


# ---- the simulated annotator ---------------------------------------------------------------------
def initial_scribbles(mask: np.ndarray, seed: int, width: int = 3) -> tuple[np.ndarray, int]:
    """One scribble per class present: the skeleton of one randomly drawn region of each class.

    ``region_fraction`` tiny makes the simulator pick ``ceil(eps * n) = 1`` region per class. Returns the
    sparse label and how many scribbles it holds (= classes that had a region big enough to scribble).
    """
    sparse = simulate_scribbles(mask, seed=seed, region_fraction=1e-9, pixel_fraction=1.0, width=width)
    n = int(sum(1 for c in np.unique(sparse) if c != IGNORE_INDEX))
    return sparse, n


def _scribble_in(region: np.ndarray, cls: int, width: int, seed: int) -> np.ndarray:
    """A scribble of class ``cls`` along the skeleton of ``region`` (bool), drawn by the project's simulator."""
    one = np.full(region.shape, IGNORE_INDEX, dtype=np.uint8)
    one[region] = cls
    return simulate_scribbles(one, seed=seed, region_fraction=1.0, pixel_fraction=1.0, width=width,
                              min_region_size=1)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """8-connected components of ``mask``, largest first (bool masks)."""
    labels, n = ndimage.label(mask, structure=_EIGHT)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    return [labels == (i + 1) for i in np.argsort(-sizes, kind="stable")]


@dataclass
class ScribbleAdded:
    """Where the annotator drew: class, pixels drawn, size of the region it was drawn in."""

    cls: int
    pixels: int
    region_pixels: int


def error_scribble(pred: np.ndarray, gt: np.ndarray, sparse: np.ndarray, *, seed: int, width: int = 3,
                   min_region: int = 10) -> tuple[np.ndarray, ScribbleAdded] | None:
    """Add one scribble where the mask is most wrong: the largest connected region of wrong pixels.

    Wrong = predicted class differs from the true class, void excluded, already-scribbled pixels excluded
    (so the loop cannot stall re-drawing a scribble the method ignores). Regions are formed per true
    class, so the scribble carries one class, as an annotator's stroke does. ``None`` when no wrong
    region of ``min_region`` pixels is left.
    """
    wrong = (pred != gt) & (gt != IGNORE_INDEX) & (sparse == IGNORE_INDEX)
    best: tuple[int, np.ndarray, int] | None = None
    for cls in np.unique(gt[wrong]):
        comps = _components(wrong & (gt == cls))
        if comps:
            size = int(comps[0].sum())
            if best is None or size > best[0]:
                best = (size, comps[0], int(cls))
    if best is None or best[0] < min_region:
        return None
    size, region, cls = best
    drawn = _scribble_in(region, cls, width, seed)
    out = sparse.copy()
    mask = drawn != IGNORE_INDEX
    out[mask] = drawn[mask]
    return out, ScribbleAdded(cls, int(mask.sum()), size)


def uncertainty_scribble(entropy: np.ndarray, gt: np.ndarray, sparse: np.ndarray, *, seed: int, width: int = 3,
                         top_fraction: float = 0.05, min_region: int = 10
                         ) -> tuple[np.ndarray, ScribbleAdded] | None:
    """The model asks: the largest connected region of its most uncertain unlabeled pixels.

    Uncertain = entropy in the top ``top_fraction`` of the image's unlabeled pixels (a quantile, so it
    adapts as the model grows confident). The model only chooses the place; the simulated annotator then
    scribbles the true class covering most of that region, along the skeleton of that class's largest
    piece inside it. Regions that are all void are passed over. ``None`` when nothing is left to ask.
    """
    free = sparse == IGNORE_INDEX
    if not free.any():
        return None
    thr = np.quantile(entropy[free], 1.0 - top_fraction)
    uncertain = free & (entropy >= thr)
    if uncertain.sum() > 2 * top_fraction * free.sum():  # ties at the quantile (e.g. a flat 0): strictly above
        uncertain = free & (entropy > thr)
    for region in _components(uncertain):
        if int(region.sum()) < min_region:
            return None
        classes, counts = np.unique(gt[region & (gt != IGNORE_INDEX)], return_counts=True)
        if classes.size == 0:
            continue
        cls = int(classes[np.argmax(counts)])
        piece = _components(region & (gt == cls))[0]
        drawn = _scribble_in(piece, cls, width, seed)
        out = sparse.copy()
        mask = drawn != IGNORE_INDEX
        out[mask] = drawn[mask]
        return out, ScribbleAdded(cls, int(mask.sum()), int(region.sum()))
    return None


def scribbles_to_reach(curve: Sequence[dict[str, Any]], target: float, key: str = "mean_dice") -> int | None:
    """NoC: the scribble count of the first point of the curve at or above ``target``; None if never."""
    for point in curve:
        if point[key] >= target:
            return int(point["scribbles"])
    return None


def write_section(path: Path, heading: str, body: str) -> None:
    """Replace (or append) the ``## heading`` section of a markdown file, leaving every other section intact."""
    text = path.read_text() if path.exists() else "# Performance\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    block = heading + "\n\n" + body.strip() + "\n"
    if start is None:
        new = text.rstrip("\n") + "\n\n" + block
    else:
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + block + ("\n" + tail if tail else "")
    path.write_text(new)
