"""Light checks on the real datasets in ../shared/data (skipped where they are absent)."""

from __future__ import annotations

import numpy as np
import pytest

from model.data import (
    CAMVID_CLASSES,
    load_camvid,
    load_dataset,
    load_mscmr,
    report,
    simulate_points,
    simulate_scribbles,
)
from tests.data.shared import shared_dataset


@pytest.fixture(scope="module")
def mscmr_root():
    return shared_dataset("mscmr_scribble")


@pytest.fixture(scope="module")
def camvid_root():
    return shared_dataset("camvid")


@pytest.fixture(scope="module")
def camvid_val(camvid_root):
    return load_camvid(camvid_root, "val")


def test_mscmr_train_has_human_scribbles(mscmr_root):
    train = load_mscmr(mscmr_root, "train")
    assert len(train) == 382
    assert train.classes.names == ["background", "RV", "Myo", "LV"]
    assert all(s.sparse is not None and s.dense is None for s in train)
    assert train[0].image.shape == (288, 288, 3)
    assert report(train)["labeled_fraction"] == pytest.approx(0.118, abs=0.001)
    groups = {s.group for s in train}
    assert len(groups) == 25 and train[0].group == train[0].name.split("_z")[0]


def test_mscmr_val_has_dense_masks(mscmr_root):
    val = load_dataset(f"mscmr:{mscmr_root}", "val")
    assert len(val) == 75
    assert all(s.dense is not None and s.sparse is None for s in val)
    assert all(int(s.dense.max()) <= 3 for s in val)  # dense: no unlabeled pixel
    assert len({s.group for s in val}) == 5


def test_camvid_splits_and_void(camvid_root, camvid_val):
    train = load_camvid(camvid_root, "train")
    assert len(train) == 367 and len(camvid_val) == 101
    assert camvid_val.classes == CAMVID_CLASSES and len(CAMVID_CLASSES.names) == 11
    assert all(s.sparse is None and s.image.shape == (360, 480, 3) for s in camvid_val)
    values = np.unique(np.concatenate([np.unique(s.dense) for s in camvid_val]))
    assert 255 in values and 11 not in values and values.max() == 255 and values[-2] <= 10


def test_simulators_stay_inside_real_regions(camvid_val):
    for s in camvid_val.samples[:3]:
        for sparse in (simulate_scribbles(s.dense, seed=0), simulate_points(s.dense, seed=0, k=2)):
            labeled = sparse != 255
            assert labeled.any()
            np.testing.assert_array_equal(sparse[labeled], s.dense[labeled])
