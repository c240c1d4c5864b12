"""The one exception type that dataset loading raises.

Datasets come from users (web uploads, folders on disk), so a failure must say *which file* is wrong
and why; callers (CLI, backend) catch this type to show the message instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class DatasetError(ValueError):
    """A dataset on disk is missing, malformed or inconsistent.

    ``path`` is the offending file or folder; the message always starts with it, so the CLI and the
    backend can print ``str(err)`` as is.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")
