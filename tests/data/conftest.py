"""Small synthetic fixtures shared by the data tests."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def toy_mask() -> np.ndarray:
    """Regions of several shapes and classes, a void band and a one-pixel region."""
    m = np.zeros((64, 80), np.uint8)
    m[5:25, 5:45] = 1  # rectangle
    m[30:60, 10:30] = 2  # second rectangle
    yy, xx = np.mgrid[:64, :80]
    ring = (np.hypot(yy - 40, xx - 58) < 15) & (np.hypot(yy - 40, xx - 58) > 8)
    m[ring] = 3  # ring around a class-0 hole
    m[5:25, 55:60] = 1  # a second, separate region of class 1
    m[:, 75:] = 255  # void band
    m[2, 2] = 2  # single pixel region
    return m
