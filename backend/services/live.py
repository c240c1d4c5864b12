"""Live mode: a dense mask within seconds of each save, from a per-project head on frozen features.

One ``model.live.LiveSegmenter`` per project, fed from the database: ``sync`` compares the project's
newest labelled revision per image with what the segmenter holds and adds, replaces or drops images
(so saves handled by another API process, deleted images and promotions all land the same way), and
follows the active model version (its encoder gives the head's features). A committed save calls
``on_saved`` (``AnnotationService.on_saved``), which syncs and starts a refit in the background; a
live ``/segment`` syncs, waits for (or runs) the refit that covers the newest labels, and predicts.
After a restart the state is rebuilt from labels and images; each labelled image's sampled feature rows
are read back from ``Settings.live_rows_dir`` (``model.live.RowStore``) when the image, its labels and the
model version are unchanged, so only the image being predicted is featurised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.files import StoredFiles
from core.orm import AnnotationRevision, Image, Project
from core.settings import Settings
from model.live import FeatureCache, LiveNotReady, LivePrediction, LiveSegmenter, RowStore
from model.preprocess import to_rgb_array

from .registry import ModelRegistry

log = logging.getLogger("sasformer.live")


@dataclass
class _Project:
    """A project's segmenter and the label revision each of its images was loaded at."""

    segmenter: LiveSegmenter
    revisions: dict[int, int] = field(default_factory=dict)  # image id -> AnnotationRevision.id
    lock: threading.Lock = field(default_factory=threading.Lock)  # one sync at a time per project


@dataclass(frozen=True)
class LiveResult:
    prediction: LivePrediction
    labelled_images: int
    version: int  # the active model version (its encoder feeds the head unless it is untrained)
    wait_ms: float  # time spent waiting for / running the refit that covers the newest labels


class LiveService:
    def __init__(self, settings: Settings, registry: ModelRegistry, sessions: sessionmaker[Session]) -> None:
        self.settings = settings
        self.registry = registry
        self.sessions = sessions
        self.files = StoredFiles(settings)
        self.cache = FeatureCache(settings.live_cache_mb * 2**20)
        self.rows = RowStore(settings.live_rows_dir) if settings.live_rows_on_disk else None
        self._projects: dict[int, _Project] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-sync")

    # ---- keeping a project's segmenter in step with the database -------------------------------------
    def _entry(self, project: Project) -> _Project:
        with self._lock:
            entry = self._projects.get(project.id)
            if entry is None or entry.segmenter.num_classes != len(project.classes):
                entry = _Project(LiveSegmenter(len(project.classes), cache=self.cache, rows=self.rows))
                self._projects[project.id] = entry
            return entry

    def sync(self, session: Session, project: Project) -> _Project:
        """Bring the project's segmenter to the newest labels and the active model version."""
        entry = self._entry(project)
        active = self.registry.active(session, project)
        loaded = self.registry.loaded(active)
        newest = (select(AnnotationRevision.image_id, func.max(AnnotationRevision.revision).label("rev"))
                  .join(Image, Image.id == AnnotationRevision.image_id).where(Image.project_id == project.id)
                  .group_by(AnnotationRevision.image_id).subquery())
        rows = session.execute(
            select(AnnotationRevision, Image).join(Image, Image.id == AnnotationRevision.image_id)
            .join(newest, (AnnotationRevision.image_id == newest.c.image_id)
                  & (AnnotationRevision.revision == newest.c.rev))).all()
        # a random version's encoder features are noise: the filter bank (and its forest) carries the mask
        trained = (active.provenance or {}).get("init") != "scratch"
        with entry.lock:
            seg = entry.segmenter
            seg.set_model(loaded.predictor if trained else None, str(active.id) if trained else None)
            wanted = {image.id: (rev, image) for rev, image in rows if rev.labeled_pixels > 0}
            for image_id in [i for i in entry.revisions if i not in wanted]:
                seg.remove(str(image_id))
                del entry.revisions[image_id]
            for image_id, (rev, image) in wanted.items():
                if entry.revisions.get(image_id) == rev.id:
                    continue
                seg.set_labels(str(image_id), self.files.image_rgb(image), self.files.label(rev, image))
                entry.revisions[image_id] = rev.id
        return entry

    def on_saved(self, project_id: int, image_id: int) -> None:
        """After a committed save: take the new labels in and refit, off the request thread, on the
        service's one worker thread (not a daemon: it is joined at shutdown, never killed inside torch).
        Saves queued behind a refit coalesce: a task whose labels a refit already covers fits nothing.
        A live ``/segment`` that comes first waits on the project's sync lock, then fits itself. A project
        nobody has asked a live mask of costs nothing: its first live request takes every label in."""
        with self._lock:
            if project_id not in self._projects:
                return
        self._pool.submit(self._take_in, project_id)

    def _take_in(self, project_id: int) -> None:
        try:
            self._sync_and_refit(project_id)
        except Exception:  # logged; the next live request syncs again and reports its own errors
            log.exception("live: taking in the labels of project %s failed", project_id)

    def _sync_and_refit(self, project_id: int) -> None:
        with session_scope(self.sessions) as s:
            project = s.get(Project, project_id)
            if project is None:
                return
            entry = self.sync(s, project)
        seg = entry.segmenter
        if seg.fitted_revision < seg.revision:
            with contextlib.suppress(LiveNotReady):  # every label of the project was erased: nothing to fit
                seg.refit()

    def close(self) -> None:
        """Finish the queued refits and stop the worker thread (app shutdown)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def forget(self, project_id: int) -> None:
        """Drop a project's state (project deleted)."""
        with self._lock:
            entry = self._projects.pop(project_id, None)
        if entry is not None:
            for key in entry.segmenter.labelled_images:
                entry.segmenter.remove(key)  # its cached features and stored rows

    # ---- serving -------------------------------------------------------------------------------------
    def predict(self, session: Session, project: Project, image: Image | None, array: np.ndarray) -> LiveResult:
        """The live mask of a stored image (by id) or an uploaded one, from a head that covers every label
        saved so far; ``LiveNotReady`` when the project has no labelled pixel yet."""
        entry = self.sync(session, project)
        seg = entry.segmenter
        t0 = time.perf_counter()
        revision = seg.revision
        if seg.fitted_revision < revision and not seg.wait_fitted(revision, timeout=self.settings.live_wait_s):
            seg.refit()  # nothing running would get there (or it took too long): fit now, serialised
        wait_ms = (time.perf_counter() - t0) * 1000
        key = str(image.id) if image is not None else None
        pred = seg.predict(image_key=key, image=to_rgb_array(array))
        return LiveResult(pred, len(seg.labelled_images), self.registry.active(session, project).number, wait_ms)


__all__ = ["LiveNotReady", "LiveResult", "LiveService"]
