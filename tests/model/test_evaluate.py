from dataclasses import dataclass

import numpy as np
import pytest

from model.evaluate import accumulate, confusion_matrix, evaluate, iou_dice, largest_component


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


# ---- largest connected component per class (evaluate(lcc=True), sasformer eval --lcc) ----------------
def test_largest_component_2d_keeps_the_biggest_blob_per_class_only() -> None:
    m = np.zeros((8, 8), np.uint8)
    m[1:4, 1:4] = 1  # 9 px: kept
    m[6, 6] = 1  # 1 px: removed
    m[5:7, 0:2] = 2  # 4 px of class 2: kept (its only component)
    m[0, 7] = 2
    m[1, 7] = 2  # 2 px of class 2, not 4-connected to the other: removed
    m[6:8, 3] = 0
    out = largest_component(m, classes=(1, 2))
    assert (out[1:4, 1:4] == 1).all() and out[6, 6] == 0
    assert (out[5:7, 0:2] == 2).all() and out[0, 7] == 0 and out[1, 7] == 0
    assert ((out == 1).sum(), (out == 2).sum()) == (9, 4)
    assert (largest_component(m, classes=()) == m).all()  # untouched classes stay
    diagonal = np.eye(3, dtype=np.uint8)  # 4-connectivity: diagonal pixels are separate components
    assert largest_component(diagonal, (1,)).sum() == 1
    with pytest.raises(ValueError, match="shape"):
        largest_component(np.zeros(4, np.uint8), (1,))


def test_largest_component_3d_connects_across_slices() -> None:
    vol = np.zeros((3, 6, 6), np.uint8)
    vol[0, 0:2, 0:2] = 1  # 4 px per slice, stacked over slices 0-2: one 12-voxel object in 3-D
    vol[1, 0:2, 0:2] = 1
    vol[2, 0:2, 0:2] = 1
    vol[1, 3:6, 3:6] = 1  # 9 px in one slice: the biggest in 2-D for slice 1, not in 3-D
    out = largest_component(vol, (1,))
    assert out[:, 0:2, 0:2].all() and not out[1, 3:6, 3:6].any()
    per_slice = largest_component(vol[1], (1,))
    assert per_slice[3:6, 3:6].all() and not per_slice[0:2, 0:2].any()


@dataclass
class _Sample:
    name: str
    image: np.ndarray
    dense: np.ndarray
    group: str | None


class _FixedPredictor:
    """Returns a stored map per image (keyed by the image's first pixel value): no model needed."""

    def __init__(self, maps: dict[int, np.ndarray]) -> None:
        self.maps = maps

    def predict(self, image: np.ndarray, flip: bool = False, scales: tuple[float, ...] = (1.0,)):  # noqa: ANN201
        @dataclass
        class _P:
            class_map: np.ndarray

        return _P(self.maps[int(image[0, 0, 0])])


def test_evaluate_lcc_removes_spurious_blobs_per_volume_and_reports_them_removed() -> None:
    gt = np.zeros((6, 6), np.uint8)
    gt[1:4, 1:4] = 1
    pred_a = gt.copy()
    pred_b = gt.copy()
    pred_b[5, 5] = 1  # a false-positive speck in slice z01
    samples = [_Sample("s_z01", np.full((6, 6, 3), 1, np.uint8), gt, "s"),
               _Sample("s_z00", np.full((6, 6, 3), 0, np.uint8), gt, "s")]  # out of order on purpose
    predictor = _FixedPredictor({0: pred_a, 1: pred_b})
    seen: dict[str, np.ndarray] = {}
    plain = evaluate(predictor, samples, ["bg", "fg"], exclude_from_mean=(0,))
    cleaned = evaluate(predictor, samples, ["bg", "fg"], exclude_from_mean=(0,), lcc=True,
                       on_prediction=lambda s, m: seen.__setitem__(s.name, m))
    assert plain.mean_volume_dice == pytest.approx(2 * 18 / (2 * 18 + 1))
    assert cleaned.mean_volume_dice == 1.0
    assert seen["s_z01"][5, 5] == 0 and (seen["s_z00"] == pred_a).all()
