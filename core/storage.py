"""Files behind a small interface: content-addressed blobs and atomic writes.

Every write goes to a temporary file in the destination directory, is fsynced and renamed into
place, so readers see the old file or the new one, never half of one. Blobs are named by their
SHA-256, which makes uploads idempotent and lets rows reference files by hash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Protocol


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + fsync + rename (same directory, so rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class BlobStore(Protocol):
    """What the services need from storage; a second backend (e.g. S3) would implement the same."""

    def put(self, data: bytes, suffix: str = "") -> str: ...
    def path(self, digest: str, suffix: str = "") -> Path: ...
    def exists(self, digest: str, suffix: str = "") -> bool: ...
    def read(self, digest: str, suffix: str = "") -> bytes: ...


class LocalBlobStore:
    """Content-addressed files under ``root/<aa>/<sha256><suffix>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: str, suffix: str = "") -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest[:2] / f"{digest}{suffix}"

    def put(self, data: bytes, suffix: str = "") -> str:
        digest = sha256(data)
        dest = self.path(digest, suffix)
        if not dest.exists():  # same content = same name: nothing to write
            atomic_write(dest, data)
        return digest

    def exists(self, digest: str, suffix: str = "") -> bool:
        return self.path(digest, suffix).is_file()

    def read(self, digest: str, suffix: str = "") -> bytes:
        return self.path(digest, suffix).read_bytes()

    def writable(self) -> bool:
        """Probe used by /ready: can a file be created and removed here?"""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".probe.", dir=self.root)
            os.close(fd)
            os.unlink(tmp)
            return True
        except OSError:
            return False
