"""Subject-level k-fold cross-validation: a fixed folds file and the train / held-out split it implies.

Why: choosing settings on the five MSCMR val subjects and reporting on them flatters whatever was
chosen (issue 14: a +0.011 lead on val was +0.0002 on unseen subjects). Cross-validation over the
training subjects gives 25 held-out subjects to choose on instead of 5. Folds are by *group*
(subject), never by slice, so no subject is on both sides; they are fixed in a JSON file written once
(``make_folds``) and read by every run, so all arms and seeds see the same folds.

File format: ``{"k": 5, "seed": 0, "split": "train", "folds": [["subject2", ...], ...]}``.

A sample without a group (CamVid's video frames) is its own group, keyed by its name: its folds file
lists frames, and ``sequence_folds`` makes such folds from contiguous runs of each video sequence, since
neighbouring frames of one drive are near-copies and must not sit on both sides of a split.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model.data.sample import DatasetSplit, Sample


def make_folds(groups: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """Shuffle the distinct groups with ``seed`` and deal them into ``k`` folds of (nearly) equal size."""
    distinct = sorted(set(groups))
    if not 2 <= k <= len(distinct):
        raise ValueError(f"k must be in 2..{len(distinct)} for {len(distinct)} groups, got {k}")
    order = np.random.default_rng(seed).permutation(len(distinct))
    return [sorted(distinct[i] for i in order[f::k]) for f in range(k)]


def sequence_folds(names: list[str], max_len: int) -> list[list[str]]:
    """Folds of video frames named ``<sequence>_<frame>``: each sequence, in frame order, cut into the fewest
    contiguous runs of at most ``max_len`` frames (as equal as possible); one run per fold, sequences in
    name order. Contiguous runs keep near-duplicate neighbouring frames on one side of every split."""
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    sequences: dict[str, list[str]] = {}
    for name in sorted(set(names)):
        seq, sep, _ = name.rpartition("_")
        if not sep:
            raise ValueError(f"frame name {name!r} is not <sequence>_<frame>")
        sequences.setdefault(seq, []).append(name)
    folds = []
    for frames in sequences.values():
        parts = -(-len(frames) // max_len)
        folds += [list(chunk) for chunk in np.array_split(np.array(frames), parts)]
    return [[str(f) for f in fold] for fold in folds]


def fold_key(sample: Sample) -> str:
    """What a folds file names for ``sample``: its group (the MSCMR subject), else its own name."""
    return str(sample.group) if sample.group is not None else sample.name


def write_folds(path: str | Path, folds: list[list[str]], **meta: Any) -> None:
    Path(path).write_text(json.dumps({"k": len(folds), **meta, "folds": folds}, indent=1) + "\n")


def read_folds(path: str | Path) -> list[list[str]]:
    """The folds of a folds file; a group in two folds is an error (it would leak across the split)."""
    data = json.loads(Path(path).read_text())
    folds = [list(map(str, f)) for f in data["folds"]]
    seen: set[str] = set()
    for f in folds:
        if seen & set(f):
            raise ValueError(f"{path}: groups {sorted(seen & set(f))} are in more than one fold")
        seen |= set(f)
    return folds


def split_fold(split: DatasetSplit, folds: list[list[str]], fold: int) -> tuple[DatasetSplit, DatasetSplit]:
    """``(train on the other folds, held-out fold)`` of ``split``.

    Every sample's group must be in some fold: a subject the folds file does not know would silently
    end up in training only, so that is an error.
    """
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold must be in 0..{len(folds) - 1}, got {fold}")
    known = {g for f in folds for g in f}
    unknown = sorted({fold_key(s) for s in split if fold_key(s) not in known})
    if unknown:
        raise ValueError(f"groups {unknown[:5]} are in no fold of the folds file")
    held = set(folds[fold])
    train = split.with_samples([s for s in split if fold_key(s) not in held])
    out = split.with_samples([s for s in split if fold_key(s) in held])
    return train, out
