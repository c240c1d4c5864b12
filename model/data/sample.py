"""In-memory form of a segmentation dataset, independent of how it was stored on disk.

Every loader (generic folder, MSCMR, CamVid) returns the same ``DatasetSplit`` of ``Sample`` s, so the
simulators, transforms, training dataset and evaluation never look at file layouts.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from model.colors import default_palette
from model.config import IGNORE_INDEX


@dataclass
class Sample:
    """One image with its optional sparse (training) and dense (evaluation) labels.

    Attributes:
        name: file stem, unique within a dataset; used to pair predictions with ground truth.
        image: ``(H, W, 3)`` uint8. Gray images are stored as three equal channels so every consumer
            sees one layout (``model.preprocess.to_rgb_array``).
        sparse: ``(H, W)`` uint8 class index, ``255`` = unlabeled: the scribbles / clicks a model is
            trained from. ``None`` when the image has none.
        dense: ``(H, W)`` uint8 full ground truth, ``255`` = void: only for evaluation, never for
            training. ``None`` when unknown.
        group: what the image belongs to (e.g. the MSCMR subject), so evaluation can stack slices
            into volumes or report per-subject scores. ``None`` for independent images.
    """

    name: str
    image: np.ndarray
    sparse: np.ndarray | None = None
    dense: np.ndarray | None = None
    group: str | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(
                f"sample {self.name!r}: image must be (H, W, 3) uint8, got {self.image.shape} {self.image.dtype}"
            )
        for kind in ("sparse", "dense"):
            lab = getattr(self, kind)
            if lab is None:
                continue
            if lab.shape != self.image.shape[:2] or lab.dtype != np.uint8:
                raise ValueError(
                    f"sample {self.name!r}: {kind} label must be {self.image.shape[:2]} uint8, "
                    f"got {lab.shape} {lab.dtype}"
                )

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)``."""
        return int(self.image.shape[0]), int(self.image.shape[1])


@dataclass
class ClassInfo:
    """Class names and display colours; the class index is the position in ``names``.

    ``IGNORE_INDEX`` (255) is never a class, so at most 254 classes are allowed (as in ``ModelConfig``).
    """

    names: list[str]
    colors: list[tuple[int, int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.names = [str(n) for n in self.names]
        if not 1 <= len(self.names) <= IGNORE_INDEX - 1:
            raise ValueError(f"need 1..{IGNORE_INDEX - 1} classes, got {len(self.names)}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"class names must be unique, got {self.names}")
        if not self.colors:
            self.colors = default_palette(len(self.names))
        colors = [tuple(int(v) for v in c) for c in self.colors]
        if len(colors) != len(self.names):
            raise ValueError(f"{len(colors)} colours given for {len(self.names)} classes")
        if any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors):
            raise ValueError(f"colours must be [r, g, b] triples in 0..255, got {self.colors}")
        self.colors = colors  # type: ignore[assignment]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @classmethod
    def default(cls, num_classes: int) -> ClassInfo:
        """``class_0`` ... with the VOC palette, for datasets that do not name their classes."""
        return cls([f"class_{i}" for i in range(num_classes)])


@dataclass
class DatasetSplit:
    """The samples of one split of one dataset, with what the class indices mean.

    Behaves like a read-only sequence of ``Sample`` s, so it can be passed wherever a list is expected.
    """

    classes: ClassInfo
    samples: list[Sample]
    split: str | None = None
    source: str = ""

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def with_samples(self, samples: Sequence[Sample]) -> DatasetSplit:
        """The same dataset description over other samples (e.g. after simulating sparse labels)."""
        return replace(self, samples=list(samples))
