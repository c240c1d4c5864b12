"""Seeded sparse labels simulated from dense masks, for datasets that have no human scribbles or clicks.

Results on simulated labels are only comparable if the simulation is stated exactly, so here it is.

Regions. For every class present in the mask (the ignore value ``255`` never is a class, so void
pixels are never labeled), its pixels are split into connected regions with 8-connectivity
(``scipy.ndimage.label`` with a 3x3 structure). Regions smaller than ``min_region_size`` pixels are
skipped: they are mostly one-pixel slivers along class boundaries, which no annotator would mark.

Scribbles (``simulate_scribbles``), per class:

1. ``ceil(region_fraction * n)`` of the class's ``n`` regions are drawn uniformly without replacement
   (so a class present in the image keeps at least one scribble whenever ``region_fraction > 0``).
2. Each chosen region is skeletonised (``skimage.morphology.skeletonize``, Zhang's thinning), giving a
   one-pixel-wide medial line. A region whose skeleton is empty gets its centre-most pixel instead
   (the maximum of its Euclidean distance transform).
3. ``pixel_fraction`` keeps a contiguous piece of the skeleton: a breadth-first walk along the
   skeleton's 8-connected pixels from a uniformly drawn skeleton pixel, stopped after
   ``max(1, round(pixel_fraction * len(skeleton)))`` pixels.
4. ``width`` thickens the line to every pixel within ``(width - 1) / 2`` (Euclidean) of it, cut by the
   region, so a scribble never crosses into a neighbouring region or class.

Points (``simulate_points``), like the single clicks of "What's the Point" (Bearman et al., 2016):
``k`` clicks per region, drawn uniformly without replacement from the region's *inner* pixels, those
whose distance to the region boundary (the image border counts as boundary) is at least ``interior``
times the region's largest distance. If the inner part has fewer than ``k`` pixels the rest are the
next most interior ones. A ``radius > 0`` grows each click to a disc of that Euclidean radius, cut
by the region.

Determinism: every random draw comes from ``np.random.default_rng(seed)``, consumed in class order
then region order (``ndimage.label``'s raster order), so a seed always gives the same labels.
``simulate_dataset`` seeds each image with ``[seed, crc32(name)]``, so an image's labels do not
depend on which other images are in the split or on their order.
"""

from __future__ import annotations

import math
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
from scipy import ndimage
from skimage.morphology import skeletonize

from model.config import IGNORE_INDEX
from model.data.sample import DatasetSplit, Sample

SeedLike = int | Sequence[int] | np.random.SeedSequence | np.random.Generator
SimulationKind = Literal["scribbles", "points"]

_EIGHT = np.ones((3, 3), dtype=bool)


def _regions(
    mask: np.ndarray, ignore_index: int, min_region_size: int
) -> Iterator[tuple[int, list[tuple[tuple[slice, slice], np.ndarray]]]]:
    """Per class (ascending): the ``(bbox slices, boolean crop)`` of each region big enough to annotate."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    for cls in np.unique(mask):
        if int(cls) == ignore_index:
            continue
        labels, _ = ndimage.label(mask == cls, structure=_EIGHT)
        found = []
        for i, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            region = labels[sl] == i
            if int(region.sum()) >= min_region_size:
                found.append((sl, region))
        yield int(cls), found


def _distance_inside(region: np.ndarray) -> np.ndarray:
    """Euclidean distance of each region pixel to the nearest pixel outside it (crop edge = outside)."""
    return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def _within(seeds: np.ndarray, radius: float, region: np.ndarray) -> np.ndarray:
    """Pixels of ``region`` within ``radius`` of a seed pixel: thickening that never leaves the region."""
    if radius <= 0:
        return seeds & region
    dist = ndimage.distance_transform_edt(~np.pad(seeds, 1))[1:-1, 1:-1]
    return (dist <= radius + 1e-9) & region


def _contiguous_piece(skeleton: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A connected run of about ``fraction`` of the skeleton's pixels, grown from a random pixel."""
    coords = np.argwhere(skeleton)
    keep = max(1, round(fraction * len(coords)))
    if keep >= len(coords):
        return skeleton
    h, w = skeleton.shape
    start = coords[rng.integers(len(coords))]
    piece = np.zeros_like(skeleton)
    piece[start[0], start[1]] = True
    queue = deque([(int(start[0]), int(start[1]))])
    taken = 1
    while queue and taken < keep:
        y, x = queue.popleft()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ny, nx = y + dy, x + dx
                if 0 <= ny < h and 0 <= nx < w and skeleton[ny, nx] and not piece[ny, nx]:
                    piece[ny, nx] = True
                    queue.append((ny, nx))
                    taken += 1
                    if taken >= keep:
                        return piece
    return piece


def simulate_scribbles(
    mask: np.ndarray,
    *,
    seed: SeedLike,
    region_fraction: float = 1.0,
    pixel_fraction: float = 1.0,
    width: int = 3,
    min_region_size: int = 20,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Scribbles along region skeletons (see the module docstring); ``(H, W)`` uint8, 255 = unlabeled."""
    if not 0.0 <= region_fraction <= 1.0 or not 0.0 < pixel_fraction <= 1.0:
        raise ValueError("region_fraction must be in [0, 1] and pixel_fraction in (0, 1]")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    rng = np.random.default_rng(seed)
    out = np.full(mask.shape, ignore_index, dtype=np.uint8)
    for cls, regions in _regions(mask, ignore_index, max(1, min_region_size)):
        n_pick = math.ceil(region_fraction * len(regions))
        for idx in sorted(rng.permutation(len(regions))[:n_pick]):
            sl, region = regions[idx]
            skeleton = skeletonize(region)
            if skeleton.any():
                line = _contiguous_piece(skeleton, pixel_fraction, rng)
            else:
                line = np.zeros_like(region)
                line[np.unravel_index(int(np.argmax(_distance_inside(region))), region.shape)] = True
            out[sl][_within(line, (width - 1) / 2, region)] = cls
    return out


def simulate_points(
    mask: np.ndarray,
    *,
    seed: SeedLike,
    k: int = 1,
    radius: float = 0,
    interior: float = 0.5,
    min_region_size: int = 20,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """``k`` clicks per region, inside its inner part (see the module docstring); 255 = unlabeled."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not 0.0 <= interior <= 1.0:
        raise ValueError(f"interior must be in [0, 1], got {interior}")
    rng = np.random.default_rng(seed)
    out = np.full(mask.shape, ignore_index, dtype=np.uint8)
    for cls, regions in _regions(mask, ignore_index, max(1, min_region_size)):
        for sl, region in regions:
            dist = _distance_inside(region)
            flat = dist.ravel()
            inner = np.flatnonzero(flat >= interior * flat.max())
            picks = rng.choice(inner, size=min(k, len(inner)), replace=False)
            if len(picks) < k:  # inner part too small: add the next most interior pixels
                rest = np.setdiff1d(np.flatnonzero(region.ravel()), picks)
                rest = rest[np.argsort(-flat[rest], kind="stable")]
                picks = np.concatenate([picks, rest[: k - len(picks)]])
            clicks = np.zeros(region.shape, dtype=bool)
            clicks.flat[picks] = True
            out[sl][_within(clicks, radius, region)] = cls
    return out


def labeled_fraction(sparse: np.ndarray, ignore_index: int = IGNORE_INDEX) -> float:
    """Share of pixels that carry a label: the number to quote next to any sparse-label result."""
    return float(np.mean(sparse != ignore_index)) if sparse.size else 0.0


def report(
    samples: DatasetSplit | Iterable[Sample],
    *,
    class_names: Sequence[str] | None = None,
    target: Literal["sparse", "dense"] = "sparse",
    ignore_index: int = IGNORE_INDEX,
) -> dict[str, Any]:
    """Label statistics of a set of samples, JSON-ready, for run READMEs and results tables.

    Keys: ``images``, ``labeled_images`` (with a ``target`` label), ``labeled_fraction`` (labeled /
    all pixels of the labeled images), ``labeled_fraction_mean`` (mean of per-image fractions),
    ``class_pixels`` (labeled pixels per class name, or per index as a string).
    """
    if class_names is None and isinstance(samples, DatasetSplit):
        class_names = samples.classes.names
    n_images = n_labeled = total = labeled = 0
    fractions: list[float] = []
    counts: np.ndarray = np.zeros(256, dtype=np.int64)
    for s in samples:
        n_images += 1
        lab = getattr(s, target)
        if lab is None:
            continue
        n_labeled += 1
        fractions.append(labeled_fraction(lab, ignore_index))
        total += lab.size
        counts += np.bincount(lab.ravel(), minlength=256)
    counts[ignore_index] = 0
    labeled = int(counts.sum())
    if class_names is not None:
        per_class = {str(name): int(counts[i]) for i, name in enumerate(class_names)}
    else:
        per_class = {str(i): int(c) for i, c in enumerate(counts) if c}
    return {
        "images": n_images,
        "labeled_images": n_labeled,
        "labeled_fraction": labeled / total if total else 0.0,
        "labeled_fraction_mean": float(np.mean(fractions)) if fractions else 0.0,
        "class_pixels": per_class,
    }


def sample_seed(seed: int, name: str) -> list[int]:
    """Per-image seed that depends only on the base seed and the image name (not on split order)."""
    return [int(seed), zlib.crc32(name.encode("utf-8"))]


def simulate_dataset(
    data: DatasetSplit | Sequence[Sample],
    kind: SimulationKind,
    *,
    seed: int,
    **params: Any,
) -> DatasetSplit | list[Sample]:
    """Replace every sample's ``sparse`` by labels simulated from its ``dense`` mask.

    ``params`` go to ``simulate_scribbles`` / ``simulate_points``. Returns the same kind of container
    it was given. Samples without a dense mask cannot be simulated, so they raise ``ValueError``.
    """
    simulators: dict[str, Callable[..., np.ndarray]] = {"scribbles": simulate_scribbles, "points": simulate_points}
    simulate = simulators.get(kind)
    if simulate is None:
        raise ValueError(f"kind must be 'scribbles' or 'points', got {kind!r}")
    out = []
    for s in data:
        if s.dense is None:
            raise ValueError(f"sample {s.name!r} has no dense mask to simulate {kind} from")
        sparse = simulate(s.dense, seed=sample_seed(seed, s.name), **params)
        out.append(Sample(name=s.name, image=s.image, sparse=sparse, dense=s.dense, group=s.group))
    return data.with_samples(out) if isinstance(data, DatasetSplit) else out
