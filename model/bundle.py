"""A model version on disk: ``model.safetensors`` + ``bundle.json`` in one directory.

``bundle.json`` holds the format version, the ``ModelConfig`` (classes, colours, variant, strides,
normalisation, LayerNorm eps) and free-form provenance (training config, data, metrics, code
version). Writes are atomic: the bundle is assembled in a sibling temp directory and renamed into
place, so a crash never leaves a half-written version that a registry could pick up.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .sasformer import SASFormer, build_sasformer

BUNDLE_FORMAT = "sasformer-bundle"
BUNDLE_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "bundle.json"


class BundleError(ValueError):
    """A bundle path that is missing, incomplete or of an unknown format version."""


@dataclass
class Bundle:
    config: ModelConfig
    provenance: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    path: Path | None = None


def code_version() -> str:
    """Package version plus git commit when run from a checkout, for provenance."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("sasformer-studio")
    except PackageNotFoundError:
        v = "unknown"
    head = Path(__file__).resolve().parents[1] / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return f"{v}+g{ref[:10]}"
    except OSError:
        return v


def save_bundle(model: SASFormer, path: str | Path, provenance: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    """Write ``model`` as a bundle directory at ``path`` atomically and return the path."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise BundleError(f"bundle already exists: {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE))
        meta = {
            "format": BUNDLE_FORMAT,
            "format_version": BUNDLE_VERSION,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_version": code_version(),
            "config": model.cfg.to_dict(),
            "provenance": provenance or {},
        }
        with open(tmp / META_FILE, "w") as f:
            json.dump(meta, f, indent=2, default=str)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def read_bundle_meta(path: str | Path) -> Bundle:
    path = Path(path)
    meta_path = path / META_FILE
    if not path.is_dir():
        raise BundleError(f"model bundle not found: {path}")
    if not meta_path.is_file() or not (path / WEIGHTS_FILE).is_file():
        raise BundleError(f"{path} is not a model bundle (needs {META_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise BundleError(f"{meta_path}: invalid JSON ({e})") from e
    if meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{meta_path}: not a {BUNDLE_FORMAT} file")
    if int(meta.get("format_version", 0)) > BUNDLE_VERSION:
        raise BundleError(
            f"{meta_path}: format version {meta['format_version']} is newer than this code understands "
            f"({BUNDLE_VERSION}); upgrade sasformer-studio"
        )
    try:
        cfg = ModelConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{meta_path}: bad model config ({e})") from e
    return Bundle(cfg, meta.get("provenance", {}), meta.get("created", ""), path)


def load_bundle(path: str | Path, device: str | torch.device = "cpu") -> tuple[SASFormer, Bundle]:
    """Rebuild the model of a bundle, weights loaded, in eval mode."""
    bundle = read_bundle_meta(path)
    model = build_sasformer(bundle.config)
    state = load_file(str(Path(path) / WEIGHTS_FILE), device=str(device))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BundleError(f"{path}: weights do not match its config ({e})") from e
    return model.to(device).eval(), bundle
