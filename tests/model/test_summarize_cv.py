"""scripts/experiments/summarize.py --cv: per-subject scores, val averaged over folds, paired tests."""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("summarize", REPO / "scripts" / "experiments" / "summarize.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(runs: Path, name: str, reports: dict[str, dict[str, float]], status: str = "completed") -> None:
    """reports: {"heldout_plain": {subject: RV dice}, ...}; Myo/LV fixed at 0.5, background excluded."""
    d = runs / name
    (d / "last").mkdir(parents=True)
    (d / "last" / "bundle.json").write_text(json.dumps({"provenance": {"status": status}}))
    for key, subjects in reports.items():
        (d / "eval" / key).mkdir(parents=True)
        vols = {s: {"background": 0.99, "RV": v, "Myo": 0.5, "LV": 0.5} for s, v in subjects.items()}
        (d / "eval" / key / "report.json").write_text(
            json.dumps({"excluded_from_mean": ["background"], "volumes": vols}))


def test_cv_runs_pool_heldout_subjects_and_average_val_over_folds(tmp_path: Path) -> None:
    mod = _load()
    _run(tmp_path, "cv_a_f0_s0", {"heldout_plain": {"s1": 0.8, "s2": 0.5}, "val_plain": {"v": 0.2}})
    _run(tmp_path, "cv_a_f1_s0", {"heldout_plain": {"s3": 0.2}, "val_plain": {"v": 0.8}})
    _run(tmp_path, "cv_a_f2_s0", {"heldout_plain": {"s9": 1.0}}, status="stopped")  # unfinished: ignored
    data = mod._cv_runs(tmp_path, "cv")
    assert set(data[("a", "plain", "heldout")]) == {(0, 0), (0, 1)}  # runs by (seed, fold)
    held = mod._per_seed(data[("a", "plain", "heldout")])[0]
    assert held == pytest.approx({"s1": 0.6, "s2": 0.5, "s3": 0.4})  # mean of RV, Myo, LV; bg excluded
    val = mod._per_seed(data[("a", "plain", "val")])[0]
    assert val == pytest.approx({"v": 0.5})  # (0.2 and 0.8 -> 0.5, Myo, LV) / 3


def test_paired_differences_are_per_subject_over_common_runs(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    mod = _load()
    a = {(0, 0): {"s1": 0.5, "s2": 0.6, "s3": 0.7}, (1, 0): {"s1": 0.7, "s2": 0.6, "s3": 0.7}}
    b = {(0, 0): {"s1": 0.6, "s2": 0.6, "s3": 0.9}, (2, 0): {"s1": 0.0, "s2": 0.0, "s3": 0.0}}  # no partner
    diffs, common = mod._paired(a, b)
    assert common == [(0, 0)] and diffs == pytest.approx([0.1, 0.0, 0.2])
    # val: a one-fold screen meets the parent's same-fold model only, not the mean of its five folds
    parent = {(0, f): {"v1": 0.8 + 0.01 * f, "v2": 0.7} for f in range(5)}
    screen = {(0, 0): {"v1": 0.81, "v2": 0.72}}
    diffs, common = mod._paired(parent, screen)
    assert common == [(0, 0)] and diffs == pytest.approx([0.01, 0.02])
    for seed in range(3):
        _run(tmp_path, f"cv_pce_f0_s{seed}", {"heldout_plain": {f"s{i}": 0.5 + 0.01 * i for i in range(6)}})
        _run(tmp_path, f"cv_new_f0_s{seed}", {"heldout_plain": {f"s{i}": 0.6 + 0.02 * i for i in range(6)}})
    mod.cv_summary(tmp_path, "cv", ["pce,new"])
    out = capsys.readouterr().out
    assert "| new | plain | 0,1,2 | 6 |" in out
    assert "B better on 6/6" in out and "Wilcoxon p=0.0312" in out  # 6 of 6 positive: exact two-sided p 2/64
    for typo in ("pce,nwe", "pce,new@lc", "pce"):  # a misspelt arm or option is an error, not "no paired subjects"
        with pytest.raises(SystemExit, match="is not ARM"):  # "pce" alone: "is not ARM,ARM"
            mod.cv_summary(tmp_path, "cv", [typo])


def _seed_run(runs: Path, name: str, miou: float, status: str = "completed") -> None:
    (runs / name / "last").mkdir(parents=True)
    report = {"miou": miou, "mean_dice": 0.0, "per_class": {"Sky": {"iou": miou, "dice": 0.0}}}
    (runs / name / "last" / "bundle.json").write_text(
        json.dumps({"provenance": {"status": status, "metrics": {"report": report}}}))


def test_seed_summary_pairs_and_ratios_over_common_seeds(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    mod = _load()
    for seed, (p, s, f) in enumerate([(0.20, 0.25, 0.30), (0.22, 0.21, 0.28), (0.24, 0.30, 0.32)]):
        _seed_run(tmp_path, f"cam_pce_s{seed}", p)
        _seed_run(tmp_path, f"cam_stage2_s{seed}", s)
        if seed < 2:
            _seed_run(tmp_path, f"cam_full_s{seed}", f)
    _seed_run(tmp_path, "cam_stage2_s7", 0.9, status="stopped")  # unfinished: ignored
    per_arm = mod.seed_runs(tmp_path, "cam", "miou")
    assert sorted(per_arm["stage2"]) == [0, 1, 2]
    mod.seed_summary(per_arm, ["pce,stage2", "pce,nothere"], ["pce,full"])
    out = capsys.readouterr().out
    assert "| pce | 0,1,2 | 0.220 ± 0.020 | 0.220 ± 0.020 |" in out
    assert "stage2 - pce per seed (s0 +0.0500, s1 -0.0100, s2 +0.0600): mean 0.0333 ± 0.0379" in out
    assert "stage2 better at 2/3 seeds" in out
    assert "pce / full over seeds 0,1: 0.2100 / 0.2900 = 0.724 (per seed 0.667, 0.786)" in out  # seed 2: no full
    assert "'nothere' has no finished run" in out


def _miou_run(runs: Path, name: str, reports: dict[str, float]) -> None:
    (runs / name / "last").mkdir(parents=True)
    (runs / name / "last" / "bundle.json").write_text(json.dumps({"provenance": {"status": "completed"}}))
    for key, miou in reports.items():
        (runs / name / "eval" / key).mkdir(parents=True)
        (runs / name / "eval" / key / "report.json").write_text(json.dumps({"miou": miou, "volumes": {}}))


def test_cv_miou_pairs_folds_and_averages_seeds(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """CamVid CV: a fold's held-out mIoU and its model's val mIoU are the units; seeds are averaged per fold."""
    mod = _load()
    for seed in (0, 1):
        for fold in range(4):
            _miou_run(tmp_path, f"cc_pce_f{fold}_s{seed}",
                      {"heldout_plain": 0.30 + 0.01 * fold, "val_plain": 0.25 + 0.01 * seed})
            _miou_run(tmp_path, f"cc_four_f{fold}_s{seed}",
                      {"heldout_plain": 0.32 + 0.01 * fold + 0.02 * seed, "val_plain": 0.26})
    data = mod._cv_runs(tmp_path, "cc", "miou")
    assert mod._per_seed(data[("four", "plain", "heldout")])[1] == pytest.approx(
        {f"heldout_f{f}": 0.34 + 0.01 * f for f in range(4)})
    diffs, common = mod._paired(data[("pce", "plain", "heldout")], data[("four", "plain", "heldout")])
    assert len(common) == 8 and diffs == pytest.approx([0.03] * 4)  # (0.02 + 0.04) / 2 per fold
    diffs, _ = mod._paired(data[("pce", "plain", "val")], data[("four", "plain", "val")])
    assert diffs == pytest.approx([0.005] * 4)  # 0.26 - mean(0.25, 0.26)
    mod.cv_summary(tmp_path, "cc", ["pce,four"], "miou")
    out = capsys.readouterr().out
    assert "| four | plain | 0,1 | 4 | 0.3450 ± 0.0141 | 0.2600 ± 0.0000 |" in out
    assert "n=4 folds" in out and "B better on 4/4" in out


def test_cv_table_averages_only_seeds_with_every_fold(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """A seed with some folds done scores other subjects: it is named, not mixed into the mean (screens excepted)."""
    mod = _load()
    for fold in (0, 1):
        _run(tmp_path, f"cv_a_f{fold}_s0", {"heldout_plain": {f"s{fold}": 0.5}, "val_plain": {"v": 0.5}})
    _run(tmp_path, "cv_a_f0_s1", {"heldout_plain": {"s0": 0.8}, "val_plain": {"v": 0.8}})  # seed 1: fold 0 only
    _run(tmp_path, "cv_scr_f0_s0", {"heldout_plain": {"s0": 0.2}, "val_plain": {"v": 0.2}})  # a one-fold screen
    _run(tmp_path, "cv_scr_f0_s1", {"heldout_plain": {"s0": 0.8}, "val_plain": {"v": 0.8}})
    mod.cv_summary(tmp_path, "cv", [])
    out = capsys.readouterr().out
    assert "| a | plain | 0 (not in mean: 1[f0]) | 2 | 0.5000 ± 0.0000 | 0.5000 ± 0.0000 |" in out
    assert "| scr | plain | 0[f0] 1[f0] partial | 1 | 0.5000 ± 0.1414 | 0.5000 ± 0.1414 |" in out
