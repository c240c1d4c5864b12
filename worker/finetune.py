"""One fine-tune job, from the database row to a registered model version.

``run_job(job_id, settings)``: claim the job (at-least-once delivery made safe), load the project's
labels as they were when the job first started, split off the held-out pixels (``jobs.holdout``),
call ``model.train.train`` (the one training loop) with callbacks that write progress to the jobs
table and a JSONL log and read the cancel flag, then evaluate the new and the active version on the
same held-out pixels, write the bundle atomically, and register it (promoted only if it is better).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker, session_scope, transact
from core.errors import ServiceError
from core.orm import Job, ModelVersion, Project
from core.settings import Settings
from core.storage import atomic_write
from core.versions import VersionStore
from jobs import lifecycle
from jobs.holdout import Split, block_size, split_labels
from jobs.inputs import Inputs, JobError
from jobs.schemas import TERMINAL_STATES, JobCreate, JobProgress
from model import IGNORE_INDEX, ModelConfig, Predictor, load_bundle, read_bundle_meta, save_bundle
from model.bundle import BundleError, code_version
from model.colors import class_colors
from model.config import TrainConfig
from model.data import ClassInfo, DatasetSplit, Sample
from model.evaluate import evaluate
from model.train import CHECKPOINT, Callbacks, TrainingError, TrainResult, train

log = logging.getLogger("sasformer.worker")

PROGRESS_EVERY_S = 0.5  # DB writes of train progress at most this often (validation events: always)
CANCEL_POLL_S = 0.5  # should_stop reads the flag at most this often: a cancel lands within ~a step + 0.5 s


# ---- the per-job log -----------------------------------------------------------------------------------
class JobLog:
    """Append-only JSONL: one object per line with the time and attempt, written at once."""

    def __init__(self, path: Path, attempt: int = 0) -> None:
        self.path = path
        self.attempt = attempt
        self._lock = threading.Lock()

    def write(self, event: str, **fields: Any) -> None:
        rec = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), "attempt": self.attempt,
               "event": event, **fields}
        line = json.dumps(rec, default=_json_default)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a") as f:
            f.write(line + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


# ---- heartbeat -----------------------------------------------------------------------------------------
class Heartbeat(threading.Thread):
    """Writes ``jobs.heartbeat_at`` every ``job_heartbeat_s`` from its own thread, so a long step or a
    long validation never looks like a dead worker; also picks up the cancel flag."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, me: str, every_s: float) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.sessions, self.job_id, self.me, self.every_s = sessions, job_id, me, every_s
        self.halt = threading.Event()
        self.cancel = False

    def run(self) -> None:
        while not self.halt.wait(self.every_s):
            try:
                with session_scope(self.sessions) as s:
                    self.cancel = lifecycle.heartbeat(s, self.job_id, self.me) or self.cancel
            except Exception:
                log.exception("heartbeat of job %s failed", self.job_id)


# ---- progress and cancel -------------------------------------------------------------------------------
class Reporter:
    """``train()`` callbacks: progress to the DB (throttled) and the JSONL log; the cancel flag."""

    def __init__(self, sessions: sessionmaker[Session], job_id: int, joblog: JobLog, heartbeat: Heartbeat,
                 attempt: int, resumed_from: int | None) -> None:
        self.sessions, self.job_id, self.log, self.hb = sessions, job_id, joblog, heartbeat
        self.attempt, self.resumed_from = attempt, resumed_from
        self.metric: dict[str, float] = {}
        self.last_write = 0.0
        self.last_poll = 0.0
        self.cancel = False
        self.first_progress_at: float | None = None

    def message(self, text: str) -> None:
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id)
            if job is not None:
                job.progress = {**(job.progress or {}), "message": text, "attempt": self.attempt,
                                "resumed_from": self.resumed_from}

    def on_progress(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        self.log.write(str(kind or "progress"), **{k: v for k, v in event.items() if k != "event"})
        if kind == "val":
            self.metric = {k: v for k in ("miou", "mean_dice") if (v := _finite(event.get(k))) is not None}
        elif kind != "train":
            return
        now = time.monotonic()
        if kind == "train" and now - self.last_write < PROGRESS_EVERY_S and event.get("step") != event.get("total"):
            return
        if self.first_progress_at is None:
            self.first_progress_at = time.time()
        progress = JobProgress(
            step=event.get("step"), total=event.get("total"),
            loss={k: float(event[k]) for k in ("loss", "pce", "aff", "keep") if _finite(event.get(k)) is not None},
            lr=_finite(event.get("lr")), throughput=_finite(event.get("images_per_s")),
            eta_s=_finite(event.get("eta_s")), metric=dict(self.metric),
            message="validated on held-out labels" if kind == "val" else None,
            attempt=self.attempt, resumed_from=self.resumed_from)
        if kind == "val":  # keep the step/loss of the last train event, update the metric only
            with session_scope(self.sessions) as s:
                job = s.get(Job, self.job_id)
                if job is not None:
                    job.progress = {**(job.progress or {}), "metric": dict(self.metric), "message": progress.message}
                    self.cancel = job.cancel_requested or self.cancel
        else:
            with session_scope(self.sessions) as s:
                self.cancel = lifecycle.record_progress(s, self.job_id, progress) or self.cancel
        self.last_write = self.last_poll = time.monotonic()

    def should_stop(self) -> bool:
        if self.cancel or self.hb.cancel:
            return True
        now = time.monotonic()
        if now - self.last_poll >= CANCEL_POLL_S:
            self.last_poll = now
            with session_scope(self.sessions) as s:
                self.cancel = bool(s.scalar(select(Job.cancel_requested).where(Job.id == self.job_id)))
        return self.cancel


# ---- promotion -----------------------------------------------------------------------------------------
def heldout_scores(bundle_path: Path, val: DatasetSplit | None, device: str | None) -> dict[str, Any]:
    """mIoU / mean Dice / pixel accuracy of a bundle on the held-out labelled pixels (255 ignored)."""
    if val is None or len(val) == 0:
        return {}
    net, _ = load_bundle(bundle_path, device="cpu")
    rep = evaluate(Predictor(net, device=device), val, val.classes.names, target="sparse")
    return {"miou": _finite(rep.miou), "mean_dice": _finite(rep.mean_dice),
            "pixel_accuracy": _finite(rep.pixel_accuracy)}


def decide(rule: str, cand: dict[str, Any], active: dict[str, Any] | None, metric: str = "miou") -> tuple[bool, str]:
    """The promotion rule: ``always``/``never`` as asked; ``if_better`` only on a strictly higher held-out
    score than the active version's on the same pixels (no held-out pixels: no evidence, no promotion)."""
    if rule == "always":
        return True, "promote=always"
    if rule == "never":
        return False, "promote=never: kept as a candidate"
    c = cand.get(metric)
    if c is None:
        return False, ("no held-out labelled pixels to compare on (val_fraction 0 or too few labels): kept as a "
                       "candidate; promote it by hand")
    if active is None:
        return True, f"held-out {metric} {c:.4f}; the active version could not be evaluated"
    a = active.get(metric)
    if a is None:
        return True, f"held-out {metric} {c:.4f}; the active version scores nothing on these pixels"
    if c > a + 1e-9:
        return True, f"held-out {metric} {c:.4f} > {a:.4f} of the active version"
    return False, f"held-out {metric} {c:.4f} <= {a:.4f} of the active version: kept as a candidate"


# ---- the job -------------------------------------------------------------------------------------------
def run_job(job_id: int, settings: Settings, task_id: str | None = None) -> dict[str, Any]:
    """Run one job to a terminal state (or skip a delivery that must not run); job errors never raise."""
    settings.ensure_dirs()
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    jobdir = settings.jobs_dir / str(job_id)
    me = lifecycle.worker_id()
    try:
        c = transact(sessions, lambda s: lifecycle.claim(s, job_id, settings, task_id=task_id, me=me),
                     settings.job_db_retry_s, f"claiming job {job_id}")
        joblog = JobLog(jobdir / "log.jsonl", c.attempt)
        if not c.run:
            log.info("job %s: not run: %s", job_id, c.reason)
            joblog.write("skipped", reason=c.reason, task_id=task_id, worker=me)
            return {"job_id": job_id, "skipped": c.reason}
        joblog.write("claimed", task_id=task_id, worker=me, resume=c.resume)
        hb = Heartbeat(sessions, job_id, me, settings.job_heartbeat_s)
        hb.start()
        try:
            return Attempt(job_id, settings, sessions, jobdir, joblog, hb, c.attempt, c.resume, me).run()
        except BaseException as e:
            from celery.exceptions import SoftTimeLimitExceeded

            if isinstance(e, JobError):
                error = str(e)
            elif isinstance(e, SoftTimeLimitExceeded):
                error = f"stopped at the soft time limit ({settings.job_soft_time_limit_s} s); checkpoint kept"
            elif isinstance(e, Exception):
                error = f"{type(e).__name__}: {e}"
            else:
                raise  # SystemExit/KeyboardInterrupt: the process is going; acks_late re-delivers the job
            joblog.write("failed", error=error, traceback=traceback.format_exc())
            log.warning("job %s failed: %s", job_id, error)
            _finish_if_mine(sessions, job_id, me, "failed", settings.job_db_retry_s, error=error)
            return {"job_id": job_id, "state": "failed", "error": error}
        finally:
            hb.halt.set()
    finally:
        engine.dispose()
        _release_accelerator_memory()


def _release_accelerator_memory() -> None:
    """The pool process outlives the job: hand its cached CUDA blocks back so other processes (or the
    next job's different shapes) can use them."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def _finish_if_mine(sessions: sessionmaker[Session], job_id: int, me: str, state: str, retry_s: float,
                    **kw: Any) -> bool:
    """Finish the job unless another attempt took it over (this process was presumed dead)."""
    def work(s: Session) -> bool:
        job = s.get(Job, job_id)
        if job is None or job.worker != me or job.state in TERMINAL_STATES:
            return False
        lifecycle.finish(s, job_id, state, **kw)
        return True

    return transact(sessions, work, retry_s, f"finishing job {job_id}")


def _used_affinity(provenance: dict[str, Any] | None) -> bool:
    """Whether a version was trained with an affinity term (its provenance records the loss it used)."""
    loss = ((provenance or {}).get("train_config") or {}).get("loss") or {}
    return float(loss.get("alpha") or 0.0) > 0.0


# ---- one attempt, in named steps ---------------------------------------------------------------------
@dataclass
class JobSpec:
    """The job as recorded, read once at the start of an attempt (one short transaction)."""

    params: JobCreate
    project_id: int
    variant: str
    names: list[str]
    colors: list[tuple[int, int, int]]
    inputs: Inputs
    samples: list[Sample]
    labels: list[np.ndarray]
    base_version_id: int | None
    base_number: int | None
    base_path: Path | None
    base_init: str | None
    base_used_affinity: bool  # the base's own training had an affinity term (alpha > 0)


@dataclass
class StartPoint:
    """Where training starts: a version's bundle, a pretrained file, or random weights."""

    label: str  # "scratch", "pretrained:<file>", "version <n>"
    from_random: bool
    names: list[str]
    init_bundle: str | None = None
    pretrained: str | None = None


@dataclass
class Splits:
    train: DatasetSplit
    heldout: DatasetSplit | None
    split: Split
    info: dict[str, Any]


@dataclass
class Attempt:
    """One delivery of a claimed job: read it, pick the start, split the labels, train, evaluate on the
    held-out pixels, write the version and register it (promoted only if better)."""

    job_id: int
    settings: Settings
    sessions: sessionmaker[Session]
    jobdir: Path
    joblog: JobLog
    hb: Heartbeat
    attempt: int
    resume: bool
    me: str

    def __post_init__(self) -> None:
        self.versions = VersionStore(self.settings)
        self.t_start = time.time()

    def run(self) -> dict[str, Any]:
        spec = self.read_job()
        start = self.start_point(spec)
        splits = self.split(spec, start)
        cfg = self.train_config(spec, start)
        reporter, resumed_from = self.reporter(cfg, start, splits)
        result = self.train(cfg, splits, reporter, resumed_from is not None)
        if result.status in ("stopped", "interrupted"):
            return self.end_early(spec, cfg, result, reporter)
        reporter.message("comparing with the active version on the held-out labels")
        outcome = self.compare(spec, splits, result)
        return self.register(spec, start, splits, cfg, result, outcome, resumed_from, reporter.first_progress_at)

    # ---- read ------------------------------------------------------------------------------------
    def read_job(self) -> JobSpec:
        with session_scope(self.sessions) as s:
            job = s.get(Job, self.job_id)
            assert job is not None  # claimed above
            project = s.get(Project, job.project_id)
            if project is None:
                raise JobError(f"project {job.project_id} no longer exists")
            params = JobCreate.model_validate(job.params)
            inputs_path = self.jobdir / "inputs.json"
            if self.resume and inputs_path.is_file():
                inputs = Inputs(json.loads(inputs_path.read_text())["items"])
            else:
                inputs = Inputs.pin(s, project, params)
                atomic_write(inputs_path, json.dumps({"items": inputs.items}).encode())
            samples, labels = inputs.load(s, self.settings)
            base = s.get(ModelVersion, job.base_version_id) if job.base_version_id else None
            return JobSpec(
                params=params, project_id=project.id, variant=project.variant,
                names=[c["name"] for c in project.classes], colors=class_colors(project.classes),
                inputs=inputs, samples=samples, labels=labels, base_version_id=job.base_version_id,
                base_number=base.number if base is not None else None,
                base_path=self.versions.abs_path(base) if base is not None else None,
                base_init=(base.provenance or {}).get("init") if base is not None else None,
                base_used_affinity=_used_affinity(base.provenance if base is not None else None))

    def start_point(self, spec: JobSpec) -> StartPoint:
        params = spec.params
        if params.scratch:
            return StartPoint("scratch", True, spec.names)
        if params.pretrained is not None:
            try:
                pretrained = str(self.versions.resolve_pretrained(params.pretrained))
            except ServiceError as e:
                raise JobError(f"pretrained checkpoint {params.pretrained!r}: {e}") from e
            return StartPoint(f"pretrained:{params.pretrained}", False, spec.names, pretrained=pretrained)
        if spec.base_path is None:
            raise JobError("the job's base model version was deleted")
        try:
            meta = read_bundle_meta(spec.base_path)
        except BundleError as e:
            raise JobError(f"base model version {spec.base_number} is unusable: {e}") from e
        if meta.config.num_classes != len(spec.names):
            raise JobError(f"base model version {spec.base_number} has {meta.config.num_classes} classes, the "
                           f"project {len(spec.names)}")
        # train() matches class names; a renamed class is the same class
        return StartPoint(f"version {spec.base_number}", spec.base_init == "scratch",
                          list(meta.config.class_names), init_bundle=str(spec.base_path))

    def split(self, spec: JobSpec, start: StartPoint) -> Splits:
        """Hold out labelled pixels in seeded blocks (``jobs.holdout``): they validate and decide promotion."""
        params = spec.params
        split = split_labels(spec.labels, [it["sha256"] for it in spec.inputs.items], params.val_fraction,
                             params.seed)
        classes = ClassInfo(start.names, spec.colors)
        train_split = DatasetSplit(classes, [Sample(sm.name, sm.image, sparse=t)
                                             for sm, t in zip(spec.samples, split.train, strict=True)
                                             if (t != IGNORE_INDEX).any()],
                                   split="train", source=f"project {spec.project_id}")
        val_samples = [Sample(sm.name, sm.image, sparse=h) for sm, h in zip(spec.samples, split.heldout, strict=True)
                       if (h != IGNORE_INDEX).any()]
        info = {"rule": "square blocks of max(8, round(min(H, W)/16)) px, held out when "
                        "rng([seed, crc32(image sha256)]) < val_fraction",
                "val_fraction": params.val_fraction, "seed": params.seed,
                "block_sizes": sorted({block_size(*lab.shape) for lab in spec.labels}),
                "train_pixels": split.train_pixels, "heldout_pixels": split.heldout_pixels,
                "classes_kept_in_training": [start.names[c] for c in split.restored_classes],
                "all_back_in_training": split.restored_all}
        self.joblog.write("data", images=len(spec.samples), start=start.label, **info)
        heldout = DatasetSplit(classes, val_samples, split="heldout") if val_samples else None
        return Splits(train_split, heldout, split, info)

    # ---- train -----------------------------------------------------------------------------------
    def train_config(self, spec: JobSpec, start: StartPoint) -> TrainConfig:
        params, settings = spec.params, self.settings
        graceful = settings.job_soft_time_limit_s - max(30.0, 0.1 * settings.job_soft_time_limit_s)
        budget = graceful if params.time_budget_s is None else min(params.time_budget_s, graceful)
        model = ModelConfig(variant=spec.variant, num_classes=len(start.names), class_names=start.names,
                            class_colors=spec.colors)
        return TrainConfig.for_interactive(
            model, steps=params.steps, batch_size=params.batch_size, crop_size=params.crop_size, seed=params.seed,
            annotation=params.annotation, alpha=params.alpha, lr=params.lr, from_random=start.from_random,
            init_bundle=start.init_bundle, pretrained=start.pretrained, time_budget_s=budget,
            checkpoint_every=settings.job_checkpoint_every, out_dir=str(self.jobdir / "run"), device=settings.device,
            labelled_images=len(spec.inputs.items), encoder=params.encoder,
            base_used_affinity=start.init_bundle is not None and spec.base_used_affinity)

    def reporter(self, cfg: TrainConfig, start: StartPoint, splits: Splits) -> tuple[Reporter, int | None]:
        """Progress reporting, and the step this attempt resumes from (None: a fresh start)."""
        run_dir = Path(cfg.out_dir)
        resumed_from = None
        if self.resume and (run_dir / CHECKPOINT).is_file():
            import torch

            resumed_from = int(torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)["step"])
            self.joblog.write("resume", from_step=resumed_from)
        elif self.resume:
            self.joblog.write("restart", reason="no checkpoint from the earlier attempt")
        reporter = Reporter(self.sessions, self.job_id, self.joblog, self.hb, self.attempt, resumed_from)
        reporter.message(f"attempt {self.attempt}: resuming from step {resumed_from}" if resumed_from is not None
                         else f"training from {start.label} on {len(splits.train)} images")
        return reporter, resumed_from

    def train(self, cfg: TrainConfig, splits: Splits, reporter: Reporter, resume: bool) -> TrainResult:
        from celery.exceptions import SoftTimeLimitExceeded

        # the soft time limit ends training like Ctrl-C: a final checkpoint and bundle are still written
        callbacks = Callbacks(on_progress=reporter.on_progress, should_stop=reporter.should_stop,
                              interrupt_on=(SoftTimeLimitExceeded,))
        try:
            return train(cfg, splits.train, splits.heldout, callbacks, resume=resume, progress_bar=False)
        except TrainingError as e:
            raise JobError(str(e)) from e

    def end_early(self, spec: JobSpec, cfg: TrainConfig, result: TrainResult, reporter: Reporter) -> dict[str, Any]:
        """Cancelled (stop flag) or interrupted (soft time limit, signal): the checkpoint stays for a resume."""
        state = "cancelled" if result.status == "stopped" else "failed"
        msg = (f"stopped at step {result.steps_done} of {spec.params.steps}; checkpoint kept at "
               f"{(Path(cfg.out_dir) / CHECKPOINT).relative_to(self.settings.home)}")
        self.joblog.write("end", state=state, steps=result.steps_done, message=msg)
        reporter.message(msg)
        _finish_if_mine(self.sessions, self.job_id, self.me, state, self.settings.job_db_retry_s,
                        error=None if state == "cancelled" else "interrupted")
        return {"job_id": self.job_id, "state": state, "steps": result.steps_done}

    # ---- evaluate and register -------------------------------------------------------------------
    def compare(self, spec: JobSpec, splits: Splits, result: TrainResult) -> dict[str, Any]:
        """Score the new and the active version on the same held-out pixels and apply the promotion rule."""
        device = self.settings.device
        cand = heldout_scores(result.bundle, splits.heldout, device)
        with session_scope(self.sessions) as s:
            proj = s.get(Project, spec.project_id)
            active = s.get(ModelVersion, proj.active_version_id) if proj and proj.active_version_id else None
            active_id, active_number = (active.id, active.number) if active else (None, None)
            active_path = self.versions.abs_path(active) if active else None
        active_scores: dict[str, Any] | None
        try:
            active_scores = heldout_scores(active_path, splits.heldout, device) if active_path is not None else None
        except BundleError as e:
            self.joblog.write("warning", message=f"active version {active_number} unreadable: {e}")
            active_scores = None
        promote, reason = decide(spec.params.promote, cand, active_scores)
        return {"promote": promote, "active_id": active_id,
                "outcome": {"promoted": False, "reason": reason, "metric": "miou",
                            "heldout_pixels": splits.split.heldout_pixels, "candidate": cand,
                            "active": active_scores or {}, "compared_with": active_number,
                            "status": result.status}}

    def register(self, spec: JobSpec, start: StartPoint, splits: Splits, cfg: TrainConfig, result: TrainResult,
                 comparison: dict[str, Any], resumed_from: int | None, first_progress_at: float | None
                 ) -> dict[str, Any]:
        """Write the version and record it.

        The number is taken (committed) first, then the bundle is written by atomic rename, then the row
        and the job's end are one transaction: a crash in between leaves at most an orphan directory
        (skipped by the version numbering), never a row without files or a half-written version.
        """
        params, outcome = spec.params, comparison["outcome"]
        metrics = {"heldout": outcome["candidate"], "heldout_pixels": splits.split.heldout_pixels,
                   "compared_with": {"version": outcome["compared_with"], "heldout": outcome["active"]},
                   "train_best_miou": _finite(result.best_metric), "train_best_step": result.best_step,
                   "steps": result.steps_done, "status": result.status}
        provenance = {
            "init": "fine_tune", "job_id": self.job_id, "base": start.label, "base_version": spec.base_number,
            "labels": [{k: it[k] for k in ("image_id", "revision", "revision_id")} for it in spec.inputs.items],
            "hyper_parameters": {**params.model_dump(), "lr": cfg.lr}, "train_config": cfg.to_dict(),
            "code_version": code_version(), "metrics": metrics, "heldout": splits.info,
            "attempts": self.attempt, "resumed_from": resumed_from,
        }
        with session_scope(self.sessions) as s:
            target = self.versions.allocate_dir(s, spec.project_id)
        net, _ = load_bundle(result.bundle, device="cpu")
        save_bundle(net, target, provenance)

        def record(s: Session) -> dict[str, Any] | None:  # pure database work: safe to retry when busy
            job = s.get(Job, self.job_id)
            if job is None or job.worker != self.me or job.state in TERMINAL_STATES:
                return None
            proj = s.get(Project, spec.project_id)
            promoted, why = comparison["promote"], outcome["reason"]
            if (promoted and params.promote == "if_better" and proj is not None
                    and proj.active_version_id != comparison["active_id"]):
                promoted, why = False, "the active version changed while this job evaluated: kept as a candidate"
            version = self.versions.register(s, spec.project_id, target, metrics=metrics,
                                             parent_id=spec.base_version_id if start.init_bundle else None,
                                             job_id=self.job_id, promote=promoted, author=f"job {self.job_id}")
            done = {**outcome, "version": version.number, "promoted": promoted, "reason": why}
            job.progress = {**(job.progress or {}),
                            "message": f"{'promoted' if promoted else 'registered'} version {version.number}: {why}"}
            lifecycle.finish(s, self.job_id, "succeeded", result_version_id=version.id, result=done)
            return done

        registered = transact(self.sessions, record, self.settings.job_db_retry_s,
                              f"registering the version of job {self.job_id}")
        if registered is None:
            self.joblog.write("abandoned", reason="another attempt took the job over", orphan=str(target))
            return {"job_id": self.job_id, "state": "abandoned"}
        self.joblog.write("result", elapsed_s=time.time() - self.t_start, first_progress_at=first_progress_at,
                          **registered)
        log.info("job %s: version %s, %s", self.job_id, registered["version"], registered["reason"])
        return {"job_id": self.job_id, "state": "succeeded", **registered}
