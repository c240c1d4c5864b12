import numpy as np
import pytest

from model.evaluate import accumulate, confusion_matrix, iou_dice


def test_confusion_matrix_and_metrics_by_hand() -> None:
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 1]], np.uint8)
    cm = confusion_matrix(pred, gt, 3)
    # rows = truth, cols = prediction; the 255 pixel is ignored
    assert cm.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    iou, dice = iou_dice(cm)
    np.testing.assert_allclose(iou, [1 / 3, 3 / 4, 1 / 2])
    np.testing.assert_allclose(dice, [2 / 4, 6 / 7, 2 / 3])
    rep = accumulate([(pred, gt, "a")], ["bg", "x", "y"], exclude_from_mean=(0,))
    assert rep.miou == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert rep.pixel_accuracy == pytest.approx(5 / 7)
    assert rep.to_dict()["per_class"]["x"]["dice"] == pytest.approx(6 / 7, abs=1e-6)


def test_volume_dice_stacks_slices_of_a_group() -> None:
    empty = np.zeros((2, 2), np.uint8)
    hit = np.array([[1, 0], [0, 0]], np.uint8)
    # subject a: class 1 only in slice 2, predicted right; a per-slice mean would count slice 1 as NaN/0
    pairs = [(empty, empty, "a"), (hit, hit, "a"), (hit, empty, "b"), (empty, hit, "b")]
    rep = accumulate(pairs, ["bg", "fg"], exclude_from_mean=(0,))
    assert rep.volume_dice["a"][1] == 1.0 and rep.volume_dice["b"][1] == 0.0
    assert rep.mean_volume_dice == pytest.approx(0.5)
    assert rep.metric("volume_dice") == rep.mean_volume_dice
    with pytest.raises(ValueError, match="unknown metric"):
        rep.metric("f1")


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(np.zeros((2, 2)), np.zeros((3, 2)), 2)
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix(np.full((2, 2), 5), np.zeros((2, 2)), 2)
