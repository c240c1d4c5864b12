"""The API's model registry: the version store plus a cache of loaded Predictors.

The API asks for the active version on every request (one indexed read) and keeps Predictors
cached by version id, so promoting or rolling back takes effect on the next request without a
restart, and a version is loaded from disk once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from core.errors import ErrorCode, ServiceError
from core.orm import ModelVersion
from core.settings import Settings
from core.versions import VersionStore
from model import ModelConfig, Predictor, load_bundle
from model.bundle import BundleError


@dataclass
class LoadedModel:
    """A Predictor and the version it serves (the Predictor holds the one inference lock)."""

    version_id: int
    number: int
    predictor: Predictor
    config: ModelConfig


class ModelRegistry(VersionStore):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self._cache: OrderedDict[int, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    # ---- predictors ---------------------------------------------------------------------------
    def loaded(self, version: ModelVersion) -> LoadedModel:
        with self._lock:
            hit = self._cache.get(version.id)
            if hit is not None:
                self._cache.move_to_end(version.id)
                return hit
            loading = self._loading.setdefault(version.id, threading.Lock())
        with loading:  # one thread loads a version; others wait for it instead of loading it again
            with self._lock:
                hit = self._cache.get(version.id)
                if hit is not None:
                    return hit
            device = self.settings.device or None
            try:
                net, bundle = load_bundle(self.abs_path(version), device=device or "cpu")
            except BundleError as e:
                raise ServiceError(ErrorCode.UNAVAILABLE, f"model version {version.number}: {e}") from e
            entry = LoadedModel(version.id, version.number, Predictor(net, device=device), bundle.config)
            with self._lock:
                self._cache[version.id] = entry
                while len(self._cache) > self.settings.predictor_cache_size:
                    self._cache.popitem(last=False)
                self._loading.pop(version.id, None)
            return entry

    def forget(self, version_id: int) -> None:
        with self._lock:
            self._cache.pop(version_id, None)

    def cached_ids(self) -> list[int]:
        with self._lock:
            return list(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
