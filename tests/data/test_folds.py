"""Subject-level folds: a partition of the groups, fixed on disk, and splits that never leak a subject."""

import json
from pathlib import Path

import numpy as np
import pytest

from model.data import ClassInfo, DatasetSplit, Sample
from model.data.folds import make_folds, read_folds, sequence_folds, split_fold, write_folds

from .shared import shared_dataset

REPO = Path(__file__).resolve().parents[2]
MSCMR_FOLDS = REPO / "configs" / "folds" / "mscmr_train_5fold.json"
CAMVID_FOLDS = REPO / "configs" / "folds" / "camvid_train_4fold.json"


def _split(groups: list[str]) -> DatasetSplit:
    img = np.zeros((4, 4, 3), np.uint8)
    samples = [Sample(f"{g}_z{i:02d}", img, np.zeros((4, 4), np.uint8), None, g) for i, g in enumerate(groups)]
    return DatasetSplit(ClassInfo(["bg", "fg"]), samples, "train")


def test_make_folds_partitions_groups_evenly_and_deterministically() -> None:
    groups = [f"s{i}" for i in range(11) for _ in range(3)]
    folds = make_folds(groups, 4, seed=3)
    flat = [g for f in folds for g in f]
    assert sorted(flat) == sorted(set(groups)) and len(flat) == 11
    assert sorted(len(f) for f in folds) == [2, 3, 3, 3]
    assert folds == make_folds(groups, 4, seed=3) and folds != make_folds(groups, 4, seed=4)
    with pytest.raises(ValueError, match="k must be"):
        make_folds(groups, 12)


def test_split_fold_holds_out_whole_groups(tmp_path: Path) -> None:
    split = _split(["a", "a", "b", "c", "c", "d"])
    write_folds(tmp_path / "f.json", [["a", "d"], ["b", "c"]], seed=0)
    folds = read_folds(tmp_path / "f.json")
    train, held = split_fold(split, folds, 0)
    assert {s.group for s in held} == {"a", "d"} and len(held) == 3
    assert {s.group for s in train} == {"b", "c"} and len(train) == 3
    with pytest.raises(ValueError, match="fold must be"):
        split_fold(split, folds, 2)
    with pytest.raises(ValueError, match="in no fold"):
        split_fold(_split(["a", "zz"]), folds, 0)
    (tmp_path / "bad.json").write_text(json.dumps({"folds": [["a", "b"], ["b"]]}))
    with pytest.raises(ValueError, match="more than one fold"):
        read_folds(tmp_path / "bad.json")


def test_committed_mscmr_folds_cover_exactly_the_training_subjects() -> None:
    root = shared_dataset("mscmr_scribble")
    names = (root / "splits" / "train.txt").read_text().split()
    subjects = {n.rpartition("_z")[0] for n in names}
    folds = read_folds(MSCMR_FOLDS)
    assert len(folds) == 5 and all(len(f) == 5 for f in folds)
    assert {g for f in folds for g in f} == subjects and len(subjects) == 25
    val = {n.rpartition("_z")[0] for n in (root / "splits" / "val.txt").read_text().split()}
    assert not val & subjects  # val subjects are never in a fold: they stay the untouched check
    assert folds == make_folds(sorted(subjects), 5, seed=0)  # the file is what its note says made it


def test_sequence_folds_cut_each_sequence_into_contiguous_runs() -> None:
    names = [f"seqB_{i:03d}" for i in range(7)] + [f"seqA_{i:03d}" for i in range(3)]
    folds = sequence_folds(list(reversed(names)), 3)
    assert folds == [["seqA_000", "seqA_001", "seqA_002"], ["seqB_000", "seqB_001", "seqB_002"],
                     ["seqB_003", "seqB_004"], ["seqB_005", "seqB_006"]]
    with pytest.raises(ValueError, match="not <sequence>_<frame>"):
        sequence_folds(["nounderscore"], 3)
    with pytest.raises(ValueError, match="max_len"):
        sequence_folds(names, 0)


def test_samples_without_a_group_are_held_out_by_name() -> None:
    img = np.zeros((4, 4, 3), np.uint8)
    split = DatasetSplit(ClassInfo(["bg", "fg"]), [Sample(n, img, None, np.zeros((4, 4), np.uint8))
                                                    for n in ("s_1", "s_2", "t_1")], "train")
    train, held = split_fold(split, [["s_1", "s_2"], ["t_1"]], 1)
    assert [s.name for s in held] == ["t_1"] and [s.name for s in train] == ["s_1", "s_2"]
    with pytest.raises(ValueError, match="in no fold"):
        split_fold(split, [["s_1"], ["t_1"]], 0)  # a frame the folds file forgot is an error, not training data


def test_committed_camvid_folds_are_the_train_sequences_in_contiguous_runs() -> None:
    root = shared_dataset("camvid")
    names = (root / "splits" / "train.txt").read_text().split()
    folds = read_folds(CAMVID_FOLDS)
    assert folds == sequence_folds(names, 102)  # the file is what its note says made it
    assert [len(f) for f in folds] == [62, 101, 102, 102]
    assert len({n.rpartition("_")[0] for n in folds[0] + folds[1]}) == 2  # one sequence each
    val = set((root / "splits" / "val.txt").read_text().split())
    assert not val & {n for f in folds for n in f}
