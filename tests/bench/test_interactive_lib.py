"""Unit tests of the interactive benchmark's pieces: annotator placement, the forest peer, metrics, report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.interactive_lib import (
    PeakRSS,
    RFPeer,
    RFSettings,
    error_scribble,
    initial_scribbles,
    rf_features,
    score,
    scribbles_to_reach,
    uncertainty_scribble,
    write_section,
)

IGN = 255


def _two_class_mask() -> np.ndarray:
    gt = np.zeros((64, 64), np.uint8)
    gt[:, 32:] = 1
    return gt


def test_error_scribble_goes_to_largest_wrong_region_with_true_class() -> None:
    gt = _two_class_mask()
    pred = gt.copy()
    pred[5:25, 40:60] = 0  # 400 wrong px of true class 1
    pred[50:55, 2:7] = 1  # 25 wrong px of true class 0
    sparse = np.full(gt.shape, IGN, np.uint8)
    out, added = error_scribble(pred, gt, sparse, seed=0)
    drawn = out != IGN
    assert added.cls == 1 and added.region_pixels == 400
    assert drawn.sum() == added.pixels > 10
    assert (out[drawn] == 1).all()
    region = np.zeros_like(drawn)
    region[5:25, 40:60] = True
    assert not (drawn & ~region).any(), "the scribble must stay inside the wrong region"


def test_error_scribble_skips_labeled_pixels_and_stops_when_right() -> None:
    gt = _two_class_mask()
    pred = gt.copy()
    pred[5:25, 40:60] = 0
    sparse = np.full(gt.shape, IGN, np.uint8)
    sparse[5:25, 40:60] = 1  # already scribbled: the method ignoring it must not stall the loop there
    pred[40:52, 8:20] = 1  # 144 px, the only free wrong region
    out, added = error_scribble(pred, gt, sparse, seed=0)
    new = (out != IGN) & (sparse == IGN)
    assert added.cls == 0 and new.any() and (out[new] == 0).all()
    assert new[40:52, 8:20].sum() == new.sum()
    assert error_scribble(gt, gt, sparse, seed=0) is None
    tiny = gt.copy()
    tiny[0:2, 0:2] = 1  # 4 px: below min_region
    assert error_scribble(tiny, gt, np.full(gt.shape, IGN, np.uint8), seed=0) is None


def test_error_scribble_never_labels_void() -> None:
    gt = _two_class_mask()
    gt[:, :16] = IGN
    pred = np.zeros_like(gt)
    pred[:, :16] = 1
    out, added = error_scribble(pred, gt, np.full(gt.shape, IGN, np.uint8), seed=0)
    assert added.cls == 1
    assert (out[:, :32] == IGN).all()


def test_uncertainty_scribble_labels_majority_true_class_of_uncertain_region() -> None:
    gt = _two_class_mask()
    entropy = np.zeros(gt.shape, np.float32)
    entropy[10:30, 20:44] = 1.0  # uncertain region: columns 20-29 are class 0, 30-43 class 1 (the majority)
    gt2 = gt.copy()
    gt2[10:30, 30:32] = 1
    sparse = np.full(gt.shape, IGN, np.uint8)
    out, added = uncertainty_scribble(entropy, gt2, sparse, seed=0, top_fraction=0.2)
    drawn = out != IGN
    assert added.cls == 1
    assert (out[drawn] == 1).all() and (gt2[drawn] == 1).all()
    assert drawn[10:30, 20:44].sum() == drawn.sum()


def test_uncertainty_scribble_passes_over_void_regions() -> None:
    gt = _two_class_mask()
    gt[0:20, 0:20] = IGN
    entropy = np.zeros(gt.shape, np.float32)
    entropy[0:20, 0:20] = 2.0  # largest uncertain region, all void
    entropy[40:50, 40:50] = 1.5
    out, added = uncertainty_scribble(entropy, gt, np.full(gt.shape, IGN, np.uint8), seed=0, top_fraction=0.2)
    assert added.cls == 1 and (out != IGN)[40:50, 40:50].sum() == (out != IGN).sum() > 0


def test_initial_scribbles_one_per_class() -> None:
    gt = np.zeros((80, 80), np.uint8)
    gt[10:30, 10:30] = 1
    gt[50:70, 50:70] = 1  # two regions of class 1: only one gets a scribble
    gt[40:60, 5:25] = 2
    sparse, n = initial_scribbles(gt, seed=3)
    assert n == 3
    assert set(np.unique(sparse)) == {0, 1, 2, IGN}
    in_a, in_b = (sparse[10:30, 10:30] == 1).any(), (sparse[50:70, 50:70] == 1).any()
    assert in_a != in_b
    assert (gt[sparse != IGN] == sparse[sparse != IGN]).all()


def test_scribbles_to_reach() -> None:
    curve = [{"scribbles": 3, "mean_dice": 0.5}, {"scribbles": 4, "mean_dice": 0.82},
             {"scribbles": 5, "mean_dice": 0.9}]
    assert scribbles_to_reach(curve, 0.8) == 4
    assert scribbles_to_reach(curve, 0.85) == 5
    assert scribbles_to_reach(curve, 0.95) is None


def _textured_image(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Left half smooth dark, right half bright and noisy; classes 0 and 2 (class ids kept, not re-indexed)."""
    img = np.full((48, 64), 60.0)
    img[:, 32:] = 170 + rng.normal(0, 25, (48, 32))
    gt = np.zeros((48, 64), np.uint8)
    gt[:, 32:] = 2
    rgb = np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, gt


def test_rf_peer_segments_tiny_image_from_scribbles() -> None:
    rng = np.random.default_rng(0)
    img, gt = _textured_image(rng)
    sparse = np.full(gt.shape, IGN, np.uint8)
    sparse[20:23, 5:20] = 0
    sparse[20:23, 40:60] = 2
    st = RFSettings(n_estimators=20, sigma_max=4)
    feats = rf_features(img, gray=True, settings=st)
    assert feats.shape[:2] == gt.shape and feats.dtype == np.float32
    pred = RFPeer(st).fit([feats], [sparse]).predict(feats)
    assert set(np.unique(pred)) <= {0, 2}
    assert (pred == gt).mean() > 0.95


def test_rf_peer_project_fit_predicts_unlabeled_image() -> None:
    rng = np.random.default_rng(1)
    st = RFSettings(n_estimators=20, sigma_max=4)
    (a, _), (b, gt_b) = _textured_image(rng), _textured_image(rng)
    sa = np.full(gt_b.shape, IGN, np.uint8)
    sa[5:8, 5:20] = 0
    sb = np.full(gt_b.shape, IGN, np.uint8)  # second labeled image carries the other class only
    sb[30:33, 40:60] = 2
    peer = RFPeer(st).fit([rf_features(a, True, st), rf_features(b, True, st)], [sa, sb])
    c, gt_c = _textured_image(rng)
    pred = peer.predict(rf_features(c, True, st))
    assert (pred == gt_c).mean() > 0.95
    with pytest.raises(ValueError):
        RFPeer(st).fit([rf_features(a, True, st)], [np.full(gt_b.shape, IGN, np.uint8)])


def test_score_matches_hand_computed_iou_and_dice() -> None:
    gt = np.array([[0, 0, 1, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1]], np.uint8)
    s = score([pred], [gt], ["a", "b"])
    assert s["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert s["mean_dice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert score([pred], [gt], ["a", "b"], exclude=(0,))["mean_dice"] == pytest.approx(4 / 5)


def test_peak_rss_sees_allocation_inside_block() -> None:
    with PeakRSS() as m:
        block = np.ones(80 * 2**20 // 8)  # 80 MB, touched
        block[::512] += 1
        del block
    assert m.peak_mb - m.start_mb > 60
    with PeakRSS() as small:
        pass
    assert small.growth_mb < m.growth_mb


def test_write_section_replaces_only_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "PERF.md"
    doc.write_text("# Performance\n\n## Model speed\n\nfast\n\n## Interactive quality\n\nold\n\n"
                   "## API latency\n\nlow\n")
    write_section(doc, "## Interactive quality", "new table")
    text = doc.read_text()
    assert "old" not in text and "new table" in text
    assert text.index("## Model speed") < text.index("new table") < text.index("## API latency")
    assert "fast" in text and "low" in text
    write_section(doc, "## Other", "appended")
    assert doc.read_text().rstrip().endswith("appended")
