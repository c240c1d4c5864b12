from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from model.data import (
    ClassInfo,
    DatasetSplit,
    Sample,
    labeled_fraction,
    report,
    simulate_dataset,
    simulate_points,
    simulate_scribbles,
)

EIGHT = np.ones((3, 3), bool)


def regions(mask: np.ndarray, min_size: int = 1):
    for cls in np.unique(mask):
        if cls == 255:
            continue
        lab, n = ndimage.label(mask == cls, structure=EIGHT)
        for i in range(1, n + 1):
            region = lab == i
            if region.sum() >= min_size:
                yield int(cls), region


def assert_inside(sparse: np.ndarray, mask: np.ndarray) -> None:
    labeled = sparse != 255
    assert labeled.any()
    np.testing.assert_array_equal(sparse[labeled], mask[labeled])
    assert not (labeled & (mask == 255)).any()


@pytest.mark.parametrize("width", [1, 3, 7])
def test_scribbles_stay_in_their_region_and_cover_every_region(toy_mask, width):
    sparse = simulate_scribbles(toy_mask, seed=0, width=width, min_region_size=1)
    assert sparse.dtype == np.uint8 and sparse.shape == toy_mask.shape
    assert_inside(sparse, toy_mask)
    for _, region in regions(toy_mask):
        assert (sparse[region] != 255).any()


def test_scribble_width_thickens_but_never_leaves_the_region(toy_mask):
    thin = simulate_scribbles(toy_mask, seed=0, width=1, min_region_size=1)
    thick = simulate_scribbles(toy_mask, seed=0, width=5, min_region_size=1)
    assert (thick != 255).sum() > 2 * (thin != 255).sum()
    assert ((thin != 255) <= (thick != 255)).all()


def test_scribbles_are_deterministic_per_seed(toy_mask):
    kw = dict(region_fraction=0.5, pixel_fraction=0.4, min_region_size=1)
    a = simulate_scribbles(toy_mask, seed=3, **kw)
    np.testing.assert_array_equal(a, simulate_scribbles(toy_mask, seed=3, **kw))
    assert any((a != simulate_scribbles(toy_mask, seed=s, **kw)).any() for s in range(4, 8))


def test_pixel_fraction_keeps_one_contiguous_piece():
    mask = np.zeros((40, 200), np.uint8)
    mask[10:30, 10:190] = 1
    full = simulate_scribbles(mask, seed=0, width=1)
    part = simulate_scribbles(mask, seed=0, width=1, pixel_fraction=0.3)
    n_full, n_part = (full == 1).sum(), (part == 1).sum()
    assert abs(n_part - 0.3 * n_full) <= 1
    assert ndimage.label(part == 1, structure=EIGHT)[1] == 1


def test_region_fraction_and_min_region_size():
    mask = np.zeros((30, 300), np.uint8)
    for i in range(10):
        mask[5:25, 5 + 29 * i : 25 + 29 * i] = 1  # ten 20x20 squares of class 1
    mask[0, 0] = 2  # one-pixel region of class 2
    sparse = simulate_scribbles(mask, seed=1, region_fraction=0.25, min_region_size=5)
    touched = [(sparse[5:25, 5 + 29 * i : 25 + 29 * i] == 1).any() for i in range(10)]
    assert sum(touched) == 3  # ceil(0.25 * 10)
    assert sparse[0, 0] == 255  # below min_region_size
    assert (simulate_scribbles(mask, seed=1, min_region_size=1)[0, 0]) == 2


@pytest.mark.parametrize("k", [1, 3])
def test_points_k_per_region_inside_interior(toy_mask, k):
    sparse = simulate_points(toy_mask, seed=0, k=k, min_region_size=1)
    assert_inside(sparse, toy_mask)
    for _, region in regions(toy_mask):
        assert (sparse[region] != 255).sum() == min(k, region.sum())
    # interior preference: clicks of the big rectangle are at least half its max depth from its border
    dist = ndimage.distance_transform_edt(np.pad(toy_mask == 1, 1))[1:-1, 1:-1]
    rect = np.zeros_like(toy_mask, bool)
    rect[5:25, 5:45] = True
    clicks = rect & (sparse != 255)
    assert (dist[clicks] >= 0.5 * dist[rect].max()).all()


def test_points_radius_and_determinism(toy_mask):
    a = simulate_points(toy_mask, seed=5, radius=2, min_region_size=1)
    assert_inside(a, toy_mask)
    np.testing.assert_array_equal(a, simulate_points(toy_mask, seed=5, radius=2, min_region_size=1))
    assert (a != 255).sum() > (simulate_points(toy_mask, seed=5, min_region_size=1) != 255).sum()


def test_void_never_labeled():
    mask = np.full((20, 20), 255, np.uint8)
    assert (simulate_scribbles(mask, seed=0) == 255).all()
    assert (simulate_points(mask, seed=0) == 255).all()


def test_fraction_report_and_dataset_seeding(toy_mask):
    sparse = np.full((4, 5), 255, np.uint8)
    sparse[0, :2] = 1
    assert labeled_fraction(sparse) == pytest.approx(0.1)
    img = np.zeros((*toy_mask.shape, 3), np.uint8)
    samples = [Sample(f"s{i}", img, dense=toy_mask) for i in range(3)]
    data = DatasetSplit(ClassInfo(["a", "b", "c", "d"]), samples)
    sim = simulate_dataset(data, "points", seed=0, min_region_size=1)
    assert isinstance(sim, DatasetSplit) and all(s.sparse is not None for s in sim)
    # an image's labels depend on its name and the seed only, not on the order of the split
    rev = simulate_dataset(samples[::-1], "points", seed=0, min_region_size=1)
    np.testing.assert_array_equal(rev[-1].sparse, sim[0].sparse)
    r = report(sim)
    assert r["images"] == r["labeled_images"] == 3
    assert set(r["class_pixels"]) == {"a", "b", "c", "d"}
    n_labeled = sum(int((s.sparse != 255).sum()) for s in sim)
    assert sum(r["class_pixels"].values()) == n_labeled
    assert r["labeled_fraction"] == pytest.approx(n_labeled / (3 * toy_mask.size))
    with pytest.raises(ValueError, match="no dense mask"):
        simulate_dataset([Sample("x", img)], "scribbles", seed=0)
