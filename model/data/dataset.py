"""The torch ``Dataset`` that feeds training and evaluation from ``Sample`` s.

Augmentation randomness is a pure function of ``(seed, epoch, index)``, not of worker processes or
call order: a resumed run (``set_epoch(e)``) replays exactly the crops and flips of the original,
and results do not change with ``num_workers``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from model.config import IMAGENET_MEAN, IMAGENET_STD
from model.data.sample import Sample
from model.data.transforms import EvalTransform, Transform
from model.preprocess import normalize

Target = Literal["sparse", "dense"]


class SparseSegDataset(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``(image float (3, H, W) normalised, target int64 (H, W) with 255 = ignore)`` pairs.

    Args:
        samples: a ``DatasetSplit`` or any iterable of ``Sample`` s.
        transform: paired augmentation; ``None`` = ``EvalTransform`` (identity).
        mean, std: input normalisation (0-1 scale), the model's, via ``model.preprocess.normalize``.
        target: ``"sparse"`` to train from scribbles/clicks, ``"dense"`` to evaluate against masks.
        seed: base seed of the augmentations.

    Every sample must have the requested target: a silently all-ignored target would train nothing.
    With ``DataLoader(persistent_workers=True)`` the workers keep their own copy of the dataset, so
    ``set_epoch`` would not reach them; use non-persistent workers (the default) when it matters.
    """

    def __init__(
        self,
        samples: Iterable[Sample],
        transform: Transform | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        target: Target = "sparse",
        seed: int = 0,
    ) -> None:
        if target not in ("sparse", "dense"):
            raise ValueError(f"target must be 'sparse' or 'dense', got {target!r}")
        self.samples = list(samples)
        missing = [s.name for s in self.samples if getattr(s, target) is None]
        if missing:
            raise ValueError(f"{len(missing)} samples have no {target} label, e.g. {missing[:3]}")
        self.transform: Transform = transform if transform is not None else EvalTransform()
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.target: Target = target
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentations of ``epoch`` (call before each epoch, and when resuming)."""
        self.epoch = int(epoch)

    def rng(self, index: int, epoch: int | None = None) -> np.random.Generator:
        """The generator used for sample ``index`` in ``epoch`` (default: the current epoch)."""
        return np.random.default_rng([self.seed, self.epoch if epoch is None else int(epoch), int(index)])

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.get(index, self.epoch)

    def get(self, index: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sample ``index`` as augmented in ``epoch``: lets a sampler carry the epoch into workers."""
        sample = self.samples[index]
        label = getattr(sample, self.target)
        image, label = self.transform(sample.image, label, self.rng(index, epoch))
        x = normalize(np.ascontiguousarray(image), self.mean, self.std)
        y = torch.from_numpy(label.astype(np.int64))
        return x, y
