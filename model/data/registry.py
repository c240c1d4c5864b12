"""One string names a dataset, so the CLI, configs and the backend need no per-dataset options.

``"mscmr:<root>"`` and ``"camvid:<root>"`` pick the published layouts; ``"folder:<root>"`` or a bare
path picks the generic folder format. Only registered prefixes are treated as prefixes, so Windows
drive letters (``C:\\data``) still read as paths.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from model.data.camvid import load_camvid
from model.data.errors import DatasetError
from model.data.folder import load_folder
from model.data.mscmr import load_mscmr
from model.data.sample import DatasetSplit

Loader = Callable[[Path, str | None], DatasetSplit]

LOADERS: dict[str, Loader] = {
    "folder": load_folder,
    "mscmr": load_mscmr,
    "camvid": load_camvid,
}


def parse_spec(spec: str) -> tuple[str, Path]:
    """``"camvid:/data/camvid"`` -> ``("camvid", Path("/data/camvid"))``; a bare path -> ``"folder"``."""
    kind, sep, rest = spec.partition(":")
    if sep and kind.lower() in LOADERS:
        return kind.lower(), Path(rest).expanduser()
    return "folder", Path(spec).expanduser()


def load_dataset(spec: str, split: str | None = None) -> DatasetSplit:
    """Load ``split`` of the dataset named by ``spec`` (see the module docstring)."""
    kind, root = parse_spec(spec)
    if kind == "folder" and not root.exists():
        prefix = spec.partition(":")[0]
        if ":" in spec and len(prefix) > 1:
            raise DatasetError(root, f"not found, and {prefix!r} is not a dataset kind ({', '.join(LOADERS)})")
    return LOADERS[kind](root, split)
