"""Where the real datasets live, for the tests that use them when present."""

from __future__ import annotations

from pathlib import Path

import pytest

# ../shared/data relative to the repository root; absent on machines without the datasets.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    root = SHARED_DATA / name
    if not (root / "images").is_dir():
        pytest.skip(f"real dataset not available: {root} is missing")
    return root
