from __future__ import annotations

import numpy as np
import pytest

from model.data import EvalTransform, TrainTransform, resize_image, resize_label, rotate_pair

COLORS = np.array([[250, 0, 0], [0, 250, 0], [0, 0, 250], [250, 250, 0]], np.uint8)


def blocky_label(h: int = 96, w: int = 128) -> np.ndarray:
    """Label made of 16-pixel blocks, so the image painted from it has wide uniform areas."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 4, size=(h // 16, w // 16)).astype(np.uint8)
    return np.kron(blocks, np.ones((16, 16), np.uint8))


@pytest.mark.parametrize("size", [(50, 50), (33, 71), (10, 7), (1, 1), (49, 51)])
def test_resize_label_keeps_a_single_labeled_pixel(size):
    for y, x in [(0, 0), (37, 51), (99, 99), (1, 98)]:
        lab = np.full((100, 100), 255, np.uint8)
        lab[y, x] = 3
        out = resize_label(lab, size)
        assert out.shape == size
        assert (out == 3).sum() >= 1 and set(np.unique(out)) <= {3, 255}
        assert out[y * size[0] // 100, x * size[1] // 100] == 3


def test_resize_label_majority_and_dense_equals_nearest():
    lab = np.full((4, 4), 255, np.uint8)
    lab[0, 0], lab[0, 1], lab[1, 1] = 1, 2, 2  # footprint of output (0, 0) at 0.5x
    assert resize_label(lab, (2, 2))[0, 0] == 2
    dense = np.random.default_rng(0).integers(0, 5, (37, 53)).astype(np.uint8)
    for size in [(18, 26), (74, 106), (20, 80)]:
        ys = np.minimum(((np.arange(size[0]) + 0.5) * 37 / size[0]).astype(int), 36)
        xs = np.minimum(((np.arange(size[1]) + 0.5) * 53 / size[1]).astype(int), 52)
        np.testing.assert_array_equal(resize_label(dense, size), dense[ys[:, None], xs])


def test_resize_image_shape():
    img = np.zeros((30, 40, 3), np.uint8)
    assert resize_image(img, (15, 80)).shape == (15, 80, 3)


def test_flip_crop_exact_alignment():
    lab = blocky_label()
    img = COLORS[lab]
    t = TrainTransform(crop_size=(64, 64), scale_range=(1.0, 1.0), hflip_prob=1.0, brightness=0)
    out_img, out_lab = t(img, lab, np.random.default_rng(0))
    assert out_img.shape == (64, 64, 3) and out_lab.shape == (64, 64)
    np.testing.assert_array_equal(out_img, COLORS[out_lab])


@pytest.mark.parametrize("seed", range(6))
def test_random_resize_crop_keeps_image_and_label_aligned(seed):
    lab = blocky_label()
    img = COLORS[lab]
    t = TrainTransform(crop_size=(80, 80), brightness=0)
    out_img, out_lab = t(img, lab, np.random.default_rng(seed))
    assert out_img.shape == (80, 80, 3) and out_img.dtype == np.uint8 and out_lab.dtype == np.uint8
    # away from block edges (bilinear blurs them) the colour must be the label's colour
    from scipy import ndimage

    valid = out_lab != 255
    interior = valid.copy()
    for c in range(4):
        interior &= ~(ndimage.binary_dilation(out_lab == c, iterations=3) & (out_lab != c))
    assert interior.sum() > 100
    np.testing.assert_allclose(out_img[interior], COLORS[out_lab[interior]], atol=2)
    # padding: the label is ignored and the image black
    assert (out_img[~valid] == 0).all()


def test_padding_when_crop_exceeds_image():
    lab = blocky_label(32, 32)
    t = TrainTransform(crop_size=(48, 40), scale_range=(1.0, 1.0), hflip_prob=0.0, brightness=0)
    out_img, out_lab = t(COLORS[lab], lab, np.random.default_rng(0))
    np.testing.assert_array_equal(out_lab[:32, :32], lab)
    assert (out_lab[32:] == 255).all() and (out_lab[:, 32:] == 255).all()
    assert (out_img[32:] == 0).all()


def test_brightness_offset_is_bounded_and_uniform():
    img = np.full((20, 20, 3), 100, np.uint8)
    lab = np.zeros((20, 20), np.uint8)
    t = TrainTransform(crop_size=20, scale_range=(1.0, 1.0), hflip_prob=0.0)
    offsets = {int(t(img, lab, np.random.default_rng(s))[0][0, 0, 0]) - 100 for s in range(40)}
    assert max(abs(o) for o in offsets) <= 10 and len(offsets) > 5


def test_crop_prefers_labeled_crops_for_sparse_labels():
    lab = np.full((200, 200), 255, np.uint8)
    lab[150, 20] = 1
    t = TrainTransform(crop_size=64, scale_range=(1.0, 1.0), crop_tries=50)
    hits = sum((t(np.zeros((200, 200, 3), np.uint8), lab, np.random.default_rng(s))[1] == 1).any() for s in range(20))
    assert hits >= 18


def test_transforms_are_reproducible_and_eval_is_identity():
    lab = blocky_label()
    img = COLORS[lab]
    t = TrainTransform(crop_size=50)
    a = t(img, lab, np.random.default_rng(7))
    b = t(img, lab, np.random.default_rng(7))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    e_img, e_lab = EvalTransform()(img, lab, np.random.default_rng(0))
    assert e_img is img and e_lab is lab


def test_rotate_pair_keeps_image_and_label_aligned_and_scribbles_thin():
    lab = np.full((96, 96), 255, np.uint8)
    lab[30:66, 30:66] = 2  # a labelled square, painted in the image too
    lab[80, 10:86] = 1  # a one-pixel scribble
    img = np.zeros((96, 96, 3), np.uint8)
    img[lab == 2] = 200
    img[lab == 1] = 100
    r_img, r_lab = rotate_pair(img, lab, 15.0)
    assert r_img.shape == img.shape and r_lab.shape == lab.shape and r_lab.dtype == np.uint8
    assert set(np.unique(r_lab)) <= {1, 2, 255}  # nearest: no blended class values
    inside = r_lab == 2
    assert abs(int(inside.sum()) - 36 * 36) < 36 * 36 * 0.05  # a rotation keeps the area
    assert (r_img[inside][:, 0] > 150).mean() > 0.95  # the image's square is where the label's is
    assert 0.8 * 76 <= (r_lab == 1).sum() <= 1.2 * 76  # the scribble keeps about its pixel count
    assert not np.array_equal(r_lab, lab)
    np.testing.assert_array_equal(rotate_pair(img, lab, 0.0)[1], lab)


def test_rotation_fills_corners_black_and_unlabeled_and_off_by_default_replays():
    lab = np.zeros((64, 64), np.uint8)
    img = np.full((64, 64, 3), 120, np.uint8)
    t = TrainTransform(crop_size=64, scale_range=(1.0, 1.0), hflip_prob=0.0, brightness=0,
                       rotate_deg=30.0, rotate_prob=1.0)
    out_img, out_lab = t(img, lab, np.random.default_rng(1))
    corners = out_lab == 255
    assert corners.any() and (out_img[corners] == 0).all()
    # rotation off draws nothing from the generator: runs made before it existed replay exactly
    base = TrainTransform(crop_size=50)
    lab2 = blocky_label()
    a = base(COLORS[lab2], lab2, np.random.default_rng(3))
    b = TrainTransform(crop_size=50, rotate_deg=0.0, rotate_prob=1.0)(COLORS[lab2], lab2, np.random.default_rng(3))
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="rotate_deg"):
        TrainTransform(crop_size=8, rotate_deg=200.0)
