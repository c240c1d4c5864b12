"""Subject-level k-fold cross-validation: a fixed folds file and the train / held-out split it implies.

Why: choosing settings on the five MSCMR val subjects and reporting on them flatters whatever was
chosen (issue 14: a +0.011 lead on val was +0.0002 on unseen subjects). Cross-validation over the
training subjects gives 25 held-out subjects to choose on instead of 5. Folds are by *group*
(subject), never by slice, so no subject is on both sides; they are fixed in a JSON file written once
(``make_folds``) and read by every run, so all arms and seeds see the same folds.

File format: ``{"k": 5, "seed": 0, "split": "train", "folds": [["subject2", ...], ...]}``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from model.data.sample import DatasetSplit


def make_folds(groups: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """Shuffle the distinct groups with ``seed`` and deal them into ``k`` folds of (nearly) equal size."""
    distinct = sorted(set(groups))
    if not 2 <= k <= len(distinct):
        raise ValueError(f"k must be in 2..{len(distinct)} for {len(distinct)} groups, got {k}")
    order = np.random.default_rng(seed).permutation(len(distinct))
    return [sorted(distinct[i] for i in order[f::k]) for f in range(k)]


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
    unknown = sorted({str(s.group) for s in split if s.group not in known})
    if unknown:
        raise ValueError(f"groups {unknown[:5]} are in no fold of the folds file")
    held = set(folds[fold])
    train = split.with_samples([s for s in split if s.group not in held])
    out = split.with_samples([s for s in split if s.group in held])
    return train, out
