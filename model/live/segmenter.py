"""``LiveSegmenter``: the facade the service calls on save, on segment and on model promotion.

One instance per project. It keeps, per labelled image, the image, its labels and a capped sample of
its labelled pixels with their features; ``refit`` trains a ``LiveHead`` on all of them, and ``predict``
gives a dense mask of any image from the last fitted head. No web, queue or database imports: the
backend decides when to call what (on save: ``set_labels`` then ``refit`` or ``refit_in_background``;
on segment: ``predict``; on promotion: ``set_model``).

Threading model (why it is safe for a save to race a refit, and several requests to predict at once):

* ``_lock`` guards only the small mutable bookkeeping (records, revision counter, current model); it is
  never held while computing features or training.
* A refit works on a snapshot of the records and trains a *copy* of the head; the result -- head,
  model version, predictor and the label revision it covers -- is published as one immutable
  ``FittedState`` by a single reference assignment. ``predict`` reads that reference once, so it
  always uses a head together with the encoder it was fitted on, even while a refit or a promotion is
  under way. Refits are serialised by ``_fit_lock``; a failed refit leaves the previous state served.
* Every ``set_labels`` takes a revision number first; a record only replaces an older one, so two
  saves of one image that finish out of order keep the newer labels.
"""

from __future__ import annotations

import copy
import hashlib
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..config import IGNORE_INDEX
from ..predictor import Prediction
from .features import LIVE_SIGMAS, EncoderFeatures, FeatureCache, array_key, filter_bank
from .head import HeadConfig, LiveHead, attention_refine, balanced_indices
from .rowstore import RowStore

FILTER_VERSION = ""
"""Version key of model-independent cache entries (the filter bank)."""

ROWS_FORMAT = 1
"""Bump when the filter bank, the encoder sampling or the pixel sampling change: stored rows of another
format are then misses (``RowStore``), never stale features."""


def _version_key(predictor: Any | None, key: str | None) -> str | None:
    """The cache/version key of a model: the caller's, or one unique to the predictor object if none given."""
    if predictor is None:
        return None
    return key if key is not None else f"predictor@{id(predictor):x}"


def gather_rows(parts: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """``np.concatenate(parts)[idx]`` without building the concatenation: a refit samples 20k of all the
    project's labelled rows (200k+ for 20 images), and copying them all first cost ~0.1 s of each save."""
    if len(idx) and np.any(np.diff(idx) < 0):
        return np.concatenate(parts)[idx]  # not sorted: the plain way keeps the order
    bounds = np.cumsum([0, *(len(p) for p in parts)])
    lo, hi = np.searchsorted(idx, bounds[:-1]), np.searchsorted(idx, bounds[1:])
    picked = [p[idx[a:b] - start] for p, a, b, start in zip(parts, lo, hi, bounds[:-1], strict=True)]
    return np.concatenate(picked) if picked else np.concatenate(parts)[idx]


class LiveNotReady(RuntimeError):
    """No head has been fitted yet (no labels, or ``refit`` not called since the first save)."""


@dataclass(frozen=True)
class LiveConfig:
    """What the live mode computes.

    ``use_encoder``: add the model's stage features to the filter bank (ignored without a predictor).
    ``refine_stage``/``refine_weight``: blend the head's probabilities with ``Y = A P`` of that MiT stage
    (``None`` = off, the default: it did not pay off in the measurements, see docs/PERFORMANCE.md).
    ``cache_bytes``: cap of the feature cache built when none is passed.
    """

    head: HeadConfig = field(default_factory=HeadConfig)
    use_encoder: bool = True
    refine_stage: int | None = None
    refine_weight: float = 0.5
    forest_trees: int = 32
    forest_depth: int = 14
    forest_weight: float = 0.0
    sigmas: tuple[float, ...] = LIVE_SIGMAS
    cache_bytes: int = 1536 * 2**20


@dataclass(frozen=True)
class _Record:
    """One labelled image: pixels, labels, and the sampled labelled pixels with their feature rows.

    Rows are float16 to keep a 20-image project within ~10 MB per image; ``enc_version`` says which
    model's encoder produced ``enc_rows`` (``None``: no encoder rows).
    """

    image_key: str
    image: np.ndarray
    labels: np.ndarray
    revision: int
    cls: np.ndarray
    ys: np.ndarray
    xs: np.ndarray
    fb_rows: np.ndarray
    enc_rows: np.ndarray | None
    enc_version: str | None
    enc_widths: tuple[int, ...]
    labelled_pixels: int


@dataclass(frozen=True)
class FittedState:
    """A fitted head with everything needed to use it consistently (published atomically)."""

    head: LiveHead
    predictor: Any | None
    version_key: str | None
    stages: tuple[int, ...]
    revision: int
    images: int
    fitted_at: float
    forest: Any | None = None  # extra-trees on the filter bank, blended with the head (see LiveConfig)


@dataclass(frozen=True)
class RefitStats:
    """What one ``refit`` did and how long its parts took (seconds)."""

    images: int
    labelled_pixels: int
    samples: int
    class_counts: tuple[int, ...]
    steps: int
    fresh: bool
    revision: int
    version_key: str | None
    featurise_s: float
    fit_s: float
    total_s: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LivePrediction(Prediction):
    """``Prediction`` (class map, probabilities) plus the label revision and model version behind it.

    Unpacks as ``class_map, probs = segmenter.predict(...)``.
    """

    revision: int = -1
    version_key: str | None = None
    refined: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.class_map
        yield self.probs


class LiveSegmenter:
    """Per-project live pixel classifier: filter bank (+ the active model's frozen encoder) -> dense masks.

    Args:
        num_classes: the project's classes; labels hold 0..num_classes-1 and 255 (unlabelled).
        predictor: the active model version's ``model.Predictor`` (``None``: filter bank only).
        model_version_key: a key that changes whenever the active model changes (e.g. the version id).
        config: ``LiveConfig``.
        cache: a ``FeatureCache`` to share (e.g. between projects); one of ``config.cache_bytes`` otherwise.
        rows: a ``RowStore`` where each labelled image's sampled rows are kept across restarts (``None``:
            memory only). Image keys must then be stable across restarts (the service uses image ids).
    """

    def __init__(self, num_classes: int, predictor: Any | None = None, model_version_key: str | None = None,
                 config: LiveConfig | None = None, cache: FeatureCache | None = None,
                 rows: RowStore | None = None) -> None:
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        self.num_classes = int(num_classes)
        self.config = config or LiveConfig()
        self.cache = cache if cache is not None else FeatureCache(self.config.cache_bytes)
        self.rows = rows
        self.rows_loaded = 0  # records read from ``rows`` instead of featurised (reported by the service)
        self._lock = threading.Lock()
        self._fit_lock = threading.Lock()
        self._fitted_cv = threading.Condition(self._lock)
        self._records: dict[str, _Record] = {}
        self._revision = 0
        self._predictor = predictor
        self._version = _version_key(predictor, model_version_key)
        self._state: FittedState | None = None
        self._head = LiveHead(self.num_classes, self.config.head)
        self._bg_thread: threading.Thread | None = None
        self._bg_again = False
        self.last_error: BaseException | None = None

    # ---- model ------------------------------------------------------------------------------------
    @property
    def stages(self) -> tuple[int, ...]:
        """0-based encoder "stages" the head uses (empty: filter bank only); 4 = the decoder logits."""
        if not self.config.use_encoder or self._predictor is None:
            return ()
        return tuple(s - 1 for s in self.config.head.encoder_stages) + ((4,) if self.config.head.use_logits else ())

    @property
    def _n_raw(self) -> int:
        return 1 if self.stages and self.config.head.use_logits else 0

    def set_model(self, predictor: Any | None, model_version_key: str | None) -> None:
        """Switch to another model version (promotion, rollback). The next ``refit`` re-featurises the
        labelled pixels with its encoder; until then ``predict`` keeps serving the previous head with the
        previous encoder, so the masks never mix two models' features."""
        with self._lock:
            if predictor is self._predictor and model_version_key == self._version:
                return
            self._predictor = predictor
            self._version = _version_key(predictor, model_version_key)
            self._revision += 1

    @property
    def model_version_key(self) -> str | None:
        return self._version

    # ---- features ---------------------------------------------------------------------------------
    def _fb(self, key: str, image: np.ndarray) -> np.ndarray:
        """The image's filter bank, cached as float16: 512x512 RGB is 54 MB instead of 108 MB, so a 20-image
        project fits the default cache (the features' own precision is far coarser than float16's)."""
        out: np.ndarray = self.cache.get_or_compute(
            (key, FILTER_VERSION), lambda: filter_bank(image, self.config.sigmas).astype(np.float16))
        return out

    def _fb_rows32(self, key: str, image: np.ndarray) -> np.ndarray:
        """The filter bank as the forest and the head read it, ``(H*W, F)`` float32, cached apart: converting
        the float16 maps cost ~70 ms of the forest's ~190 ms prediction and 0.13 s of the head's ~0.55 s at
        512x512, and the image being annotated is predicted on opening and again after every save. The price
        is memory: 108 MB for a 512x512 RGB image (twice its float16 maps) in the shared, capped LRU, so
        fewer images' maps stay cached (``live_cache_mb``)."""
        def compute() -> np.ndarray:
            fb = self._fb(key, image)
            return np.ascontiguousarray(fb.reshape(-1, fb.shape[-1]), dtype=np.float32)

        out: np.ndarray = self.cache.get_or_compute((key, f"{FILTER_VERSION}:rows32"), compute)
        return out

    def _enc(self, key: str, image: np.ndarray, predictor: Any, version: str) -> EncoderFeatures:
        att = (self.config.refine_stage,) if self.config.refine_stage else ()
        logits = self.config.head.use_logits

        def compute() -> EncoderFeatures:
            return EncoderFeatures.of(predictor, image, attention_stages=att, with_logits=logits)

        out: EncoderFeatures = self.cache.get_or_compute((key, f"enc:{version}:att{att}:logits{int(logits)}"),
                                                         compute)
        return out

    # ---- labels -----------------------------------------------------------------------------------
    def set_labels(self, image_key: str, image: np.ndarray, labels: np.ndarray,
                   model_version_key: str | None = None) -> int:
        """Store the labels of one image (a save); returns the revision it got. Does not refit.

        ``labels``: ``(H, W)`` with class ids and 255 = unlabelled; an image with no labelled pixel is
        removed from the project's training set. ``model_version_key``, when given and different from
        the current one, is only checked: the model changes through ``set_model`` (the caller owns the
        predictor), and a save carrying a stale key must not switch the encoder back.
        """
        image = np.asarray(image)
        labels = np.asarray(labels)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"labels {labels.shape} do not match image {image.shape[:2]}")
        bad = (labels != IGNORE_INDEX) & (labels >= self.num_classes)
        if bad.any():
            raise ValueError(f"labels hold class ids >= {self.num_classes}: {sorted(set(labels[bad].tolist()))[:5]}")
        with self._lock:
            self._revision += 1
            revision = self._revision
            predictor, version = self._predictor, self._version
        del model_version_key  # informational; see docstring
        labelled = labels != IGNORE_INDEX
        if not labelled.any():
            self._store(image_key, None, revision)
            if self.rows is not None:
                self.rows.remove(image_key)
            return revision
        if self._image_changed(image_key, image):
            self.cache.drop_image(image_key)
        rec = self._make_record(image_key, image, labels.astype(np.uint8), revision, predictor, version)
        self._store(image_key, rec, revision)
        return revision

    def _image_changed(self, key: str, image: np.ndarray) -> bool:
        with self._lock:
            old = self._records.get(key)
        return old is not None and (old.image.shape != image.shape or not np.array_equal(old.image, image))

    def _digest(self, image: np.ndarray, labels: np.ndarray, version: str | None) -> str:
        """What a record's rows depend on: pixels, labels, feature and sampling settings, encoder version."""
        h = hashlib.blake2b(digest_size=20)
        for a in (image, labels):
            a = np.ascontiguousarray(a)
            h.update(str((a.shape, a.dtype.str)).encode())
            h.update(a.tobytes())
        head = self.config.head
        h.update(repr((ROWS_FORMAT, self.config.sigmas, head.per_image_class_cap, head.seed, self.stages,
                       version if self.stages else None, self.num_classes)).encode())
        return h.hexdigest()

    def _make_record(self, key: str, image: np.ndarray, labels: np.ndarray, revision: int, predictor: Any | None,
                     version: str | None) -> _Record:
        if self.rows is None:
            return self._featurise_record(key, image, labels, revision, predictor, version)
        digest = self._digest(image, labels, version if predictor is not None else None)
        got = self.rows.load(key, digest)
        if got is not None:
            enc = got.get("enc_rows")
            with self._lock:
                self.rows_loaded += 1
            return _Record(key, image, labels, revision, got["cls"], got["ys"], got["xs"], got["fb_rows"], enc,
                           str(got["enc_version"]) if enc is not None else None,
                           tuple(int(w) for w in got["enc_widths"]), int(got["labelled_pixels"]))
        rec = self._featurise_record(key, image, labels, revision, predictor, version)
        arrays = {"cls": rec.cls, "ys": rec.ys, "xs": rec.xs, "fb_rows": rec.fb_rows,
                  "enc_widths": np.array(rec.enc_widths, np.int64),
                  "labelled_pixels": np.array(rec.labelled_pixels, np.int64)}
        if rec.enc_rows is not None:
            arrays.update(enc_rows=rec.enc_rows, enc_version=np.array(rec.enc_version))
        self.rows.save(key, digest, arrays)
        return rec

    def _featurise_record(self, key: str, image: np.ndarray, labels: np.ndarray, revision: int,
                          predictor: Any | None, version: str | None) -> _Record:
        cap = self.config.head.per_image_class_cap
        rng = np.random.default_rng([self.config.head.seed, zlib.crc32(key.encode())])
        ys_all, xs_all = np.nonzero(labels != IGNORE_INDEX)
        cls_all = labels[ys_all, xs_all]
        keep = []
        for c in np.unique(cls_all):
            idx = np.flatnonzero(cls_all == c)
            keep.append(idx if len(idx) <= cap else rng.choice(idx, cap, replace=False))
        sel = np.sort(np.concatenate(keep))
        ys, xs, cls = ys_all[sel], xs_all[sel], cls_all[sel].astype(np.int64)
        fb_rows = self._fb(key, image)[ys, xs].astype(np.float16)
        enc_rows = None
        widths: tuple[int, ...] = ()
        if self.stages and predictor is not None and version is not None:
            enc = self._enc(key, image, predictor, version)
            enc_rows = enc.sample(ys, xs, self.stages).astype(np.float16)
            widths = tuple(enc.widths[i] for i in self.stages)
        return _Record(key, image, labels, revision, cls, ys, xs, fb_rows, enc_rows,
                       version if enc_rows is not None else None, widths, int(len(ys_all)))

    def _store(self, key: str, rec: _Record | None, revision: int) -> None:
        with self._lock:
            old = self._records.get(key)
            if old is not None and old.revision > revision:
                return  # a newer save of this image finished first
            if rec is None:
                self._records.pop(key, None)
            else:
                self._records[key] = rec

    def remove(self, image_key: str) -> bool:
        """Forget an image's labels (image deleted or labels cleared); True if it had any."""
        with self._lock:
            had = self._records.pop(image_key, None) is not None
            if had:
                self._revision += 1
        self.cache.drop_image(image_key)
        if self.rows is not None:
            self.rows.remove(image_key)
        return had

    @property
    def revision(self) -> int:
        """Increases with every change of labels or model; compare with ``fitted_revision``."""
        with self._lock:
            return self._revision

    @property
    def fitted_revision(self) -> int:
        """The revision the served head was fitted at (-1: none)."""
        state = self._state
        return state.revision if state is not None else -1

    @property
    def labelled_images(self) -> list[str]:
        with self._lock:
            return sorted(self._records)

    @property
    def state(self) -> FittedState | None:
        return self._state

    # ---- fitting ----------------------------------------------------------------------------------
    def refit(self) -> RefitStats:
        """Fit the head on every labelled image (class-balanced, capped sample) and publish it.

        Serialised: a second caller waits for the first and then fits again on the newer labels.
        Raises ``LiveNotReady`` when no image has labels (the served head, if any, is then dropped).
        """
        with self._fit_lock:
            t0 = time.perf_counter()
            with self._lock:
                records = list(self._records.values())
                revision = self._revision
                predictor, version = self._predictor, self._version
            stages = self.stages if predictor is not None else ()
            if not records:
                with self._lock:
                    self._state = None
                    self._fitted_cv.notify_all()
                raise LiveNotReady("no labelled pixel in the project")
            if stages:
                records = [self._refeaturise(r, predictor, version) for r in records]
            t1 = time.perf_counter()
            cls = np.concatenate([r.cls for r in records])
            rng = np.random.default_rng([self.config.head.seed, revision])
            idx = balanced_indices(cls, self.config.head.max_samples, rng, self.num_classes)
            fb = gather_rows([r.fb_rows for r in records], idx).astype(np.float32)
            enc = None
            if stages:
                enc = gather_rows([r.enc_rows for r in records if r.enc_rows is not None], idx).astype(np.float32)
            head = copy.copy(self._head)  # fit() replaces attributes; the served head is never touched
            if predictor is None:
                # no (trained) encoder: the filter bank carries the mask, and on it the forest generalises
                # from tiny, uneven scribbles where the network does not (docs/PERFORMANCE.md, Live mode)
                info: dict[str, Any] = {"steps": 0, "fresh": True}
                forest = self._fit_forest(fb, cls[idx], force=True)
            else:
                widths = records[0].enc_widths if stages else ()
                info = head.fit(fb, enc, cls[idx], widths, feature_key=version if stages else None,
                                n_raw=self._n_raw if stages else 0)
                forest = self._fit_forest(fb, cls[idx])
            t2 = time.perf_counter()
            state = FittedState(head, predictor, version, stages, revision, len(records), time.time(), forest)
            with self._lock:
                self._head = head
                self._state = state
                self._fitted_cv.notify_all()
            counts = np.bincount(cls[idx], minlength=self.num_classes)
            return RefitStats(len(records), sum(r.labelled_pixels for r in records), int(len(idx)),
                              tuple(int(c) for c in counts), info["steps"], info["fresh"], revision,
                              state.version_key, t1 - t0, t2 - t1, time.perf_counter() - t0)

    def _fit_forest(self, fb: np.ndarray, cls: np.ndarray, force: bool = False) -> Any | None:
        """Extremely randomised trees on the filter-bank rows: the ilastik classifier, small enough to fit
        and predict a 512x512 image in well under a second. Alone when there is no trained encoder (the
        network over-fits tiny, uneven scribbles where the forest does not); blended with the head at
        ``forest_weight`` otherwise (0 by default: with a trained encoder the head wins)."""
        if (not force and self.config.forest_weight <= 0) or self.config.forest_trees <= 0:
            return None
        from sklearn.ensemble import ExtraTreesClassifier

        forest = ExtraTreesClassifier(n_estimators=self.config.forest_trees, max_depth=self.config.forest_depth,
                                      min_samples_leaf=2, n_jobs=1, random_state=self.config.head.seed)
        forest.fit(fb, cls)
        return forest

    def _forest_proba(self, forest: Any, rows: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        p = np.zeros((self.num_classes, rows.shape[0]), np.float32)
        p[forest.classes_.astype(int)] = forest.predict_proba(rows).T.astype(np.float32)
        return p.reshape(self.num_classes, *hw)

    def _refeaturise(self, rec: _Record, predictor: Any, version: str | None) -> _Record:
        """Encoder rows of a record under ``version`` (recomputed after a promotion, kept in the record)."""
        if rec.enc_version == version and rec.enc_rows is not None:
            return rec
        assert version is not None
        enc = self._enc(rec.image_key, rec.image, predictor, version)
        new = replace(rec, enc_rows=enc.sample(rec.ys, rec.xs, self.stages).astype(np.float16), enc_version=version,
                      enc_widths=tuple(enc.widths[i] for i in self.stages))
        with self._lock:
            if self._records.get(rec.image_key) is rec:
                self._records[rec.image_key] = new
        return new

    def refit_in_background(self) -> None:
        """Start a refit on a worker thread, or make the running one refit again when it ends.

        Saves arriving during a refit coalesce into one more refit, so a burst of saves costs at most two
        fits. Errors are kept in ``last_error`` (the served head stays). Use ``wait_fitted`` to block
        until a given revision is served.
        """
        with self._lock:
            if self._bg_thread is not None and self._bg_thread.is_alive():
                self._bg_again = True
                return
            self._bg_again = False
            # not a daemon: the interpreter joins it at exit instead of killing it inside torch (which aborts
            # the process with "terminate called without an active exception")
            self._bg_thread = threading.Thread(target=self._bg_loop, name="live-refit")
            self._bg_thread.start()

    def _bg_loop(self) -> None:
        while True:
            try:
                self.refit()
                self.last_error = None
            except LiveNotReady:  # every label was removed meanwhile: no head to serve, not an error
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - kept for the caller; the served head stays valid
                self.last_error = exc
            with self._lock:
                if not self._bg_again:
                    self._bg_thread = None
                    self._fitted_cv.notify_all()
                    return
                self._bg_again = False

    def wait_fitted(self, revision: int, timeout: float | None = None) -> bool:
        """Block until the served head covers ``revision`` (e.g. the one ``set_labels`` returned)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._fitted_cv:
            while True:
                st = self._state
                if st is not None and st.revision >= revision:
                    return True
                if self._bg_thread is None and not self._fit_lock.locked():
                    return False  # nothing running that could get there
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._fitted_cv.wait(0.05 if left is None else min(left, 0.05))

    # ---- prediction -------------------------------------------------------------------------------
    def predict(self, image_key: str | None = None, image: np.ndarray | None = None) -> LivePrediction:
        """Dense class map and ``(C, H, W)`` probabilities of one image from the served head.

        Pass the key of a stored image (its labelled pixels are not overwritten: the mask is the head's
        view), or an image array (with or without a key; without one it is cached by content).
        """
        state = self._state
        if state is None:
            raise LiveNotReady("no live head fitted yet: save labels and refit first")
        if image is None:
            if image_key is None:
                raise ValueError("pass an image key or an image")
            with self._lock:
                rec = self._records.get(image_key)
            if rec is None:
                raise KeyError(f"image {image_key!r} is not stored; pass its pixels")
            image = rec.image
        key = image_key if image_key is not None else array_key(image)
        fb = self._fb(key, image)
        enc = None
        if state.stages or (self.config.refine_stage and state.predictor is not None):
            assert state.predictor is not None and state.version_key is not None
            enc = self._enc(key, image, state.predictor, state.version_key)
        if state.predictor is None and state.forest is not None:
            probs = self._forest_proba(state.forest, self._fb_rows32(key, image), fb.shape[:2])
        else:
            rows = self._fb_rows32(key, image).reshape(fb.shape)  # float32 view: no conversion per call
            probs = state.head.predict_proba(rows, enc, state.stages if state.stages else None)
            if state.forest is not None:
                a = self.config.forest_weight
                probs = (1 - a) * probs + a * self._forest_proba(state.forest, self._fb_rows32(key, image),
                                                                 fb.shape[:2])
        refined = False
        if self.config.refine_stage and enc is not None:
            probs = attention_refine(probs, enc, self.config.refine_stage, self.config.refine_weight)
            refined = True
        return LivePrediction(probs.argmax(0).astype(np.uint8), probs, revision=state.revision,
                              version_key=state.version_key, refined=refined)
