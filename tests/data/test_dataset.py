from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import IMAGENET_MEAN, IMAGENET_STD
from model.data import Sample, SparseSegDataset, TrainTransform
from model.preprocess import normalize


def samples(n: int = 4) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        img = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        dense = rng.integers(0, 3, (40, 50), dtype=np.uint8)
        sparse = np.full((40, 50), 255, np.uint8)
        sparse[10:12, 5:40] = 1
        out.append(Sample(f"s{i}", img, sparse=sparse, dense=dense))
    return out


def test_eval_items_are_normalised_images_and_long_targets():
    data = samples()
    ds = SparseSegDataset(data, target="dense")
    x, y = ds[1]
    assert x.shape == (3, 40, 50) and x.dtype == torch.float32
    assert y.shape == (40, 50) and y.dtype == torch.int64
    torch.testing.assert_close(x, normalize(data[1].image, IMAGENET_MEAN, IMAGENET_STD))
    assert torch.equal(y, torch.from_numpy(data[1].dense.astype(np.int64)))


def test_augmentations_replay_per_epoch_and_index():
    ds = SparseSegDataset(samples(), TrainTransform(crop_size=32), seed=3)
    first = [ds[i] for i in range(4)]
    ds.set_epoch(1)
    second = [ds[i] for i in range(4)]
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    ds.set_epoch(0)  # a resumed run replays epoch 0 exactly
    for i in (2, 0):
        x, y = ds[i]
        assert torch.equal(x, first[i][0]) and torch.equal(y, first[i][1])
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch[0].shape == (2, 3, 32, 32) and batch[1].shape == (2, 32, 32)


def test_missing_target_is_an_error():
    data = samples()
    data[2].sparse = None
    with pytest.raises(ValueError, match="no sparse label"):
        SparseSegDataset(data)
