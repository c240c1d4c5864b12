"""One fine-tune job, from the database row to a registered model version.

``run_job(job_id, settings)``: claim the job (at-least-once delivery made safe), load the project's
labels as they were when the job first started, split off the held-out pixels (``worker.holdout``),
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

from backend.db import make_engine, make_sessionmaker, session_scope, transact
from backend.orm import AnnotationRevision, Image, Job, ModelVersion, Project
from backend.schemas.jobs import TERMINAL_STATES, JobCreate, JobProgress
from backend.services import jobs as jobs_svc
from backend.services.annotations import AnnotationService
from backend.services.images import ImageStore
from backend.services.registry import ModelRegistry, rgb_color
from backend.settings import Settings
from backend.storage import atomic_write
from model import IGNORE_INDEX, LossConfig, ModelConfig, Predictor, load_bundle, read_bundle_meta, save_bundle
from model.bundle import BundleError, code_version
from model.config import TrainConfig
from model.data import ClassInfo, DatasetSplit, Sample
from model.evaluate import evaluate
from model.train import CHECKPOINT, Callbacks, TrainingError, TrainResult, train

from .holdout import block_size, split_labels

log = logging.getLogger("sasformer.worker")

PROGRESS_EVERY_S = 0.5  # DB writes of train progress at most this often (validation events: always)
CANCEL_POLL_S = 0.5  # should_stop reads the flag at most this often: a cancel lands within ~a step + 0.5 s
LR_SCRATCH, LR_FINETUNE = 6e-4, 6e-5


class JobError(Exception):
    """A job that cannot run as asked; the message is shown to the user as the job's error."""


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
                    self.cancel = jobs_svc.heartbeat(s, self.job_id, self.me) or self.cancel
            except Exception:
                log.exception("heartbeat of job %s failed", self.job_id)


# ---- inputs --------------------------------------------------------------------------------------------
@dataclass
class Inputs:
    """The labels a job trains on, pinned at its first start so a resumed attempt sees the same data."""

    items: list[dict[str, Any]]  # {image_id, revision, revision_id, sha256, labeled_pixels}

    @classmethod
    def pin(cls, session: Session, project: Project, params: JobCreate) -> Inputs:
        q = select(Image).where(Image.project_id == project.id).order_by(Image.id)
        if params.images is not None:
            q = q.where(Image.id.in_(params.images))
        items = []
        for image in session.scalars(q):
            rev = session.scalar(select(AnnotationRevision).where(AnnotationRevision.image_id == image.id)
                                 .order_by(AnnotationRevision.revision.desc()).limit(1))
            if rev is not None and rev.labeled_pixels > 0:
                items.append({"image_id": image.id, "revision": rev.revision, "revision_id": rev.id,
                              "sha256": image.sha256, "labeled_pixels": rev.labeled_pixels})
        if not items:
            raise JobError(f"project {project.id} has no labelled images to train on (draw scribbles or points "
                           "on at least one image first)")
        return cls(items)


def load_samples(session: Session, settings: Settings, inputs: Inputs) -> tuple[list[Sample], list[np.ndarray]]:
    """Images (RGB uint8, the model's conversion) and their sparse labels at the pinned revisions."""
    images, annotations = ImageStore(settings), AnnotationService(settings)
    samples, labels = [], []
    for it in inputs.items:
        image = session.get(Image, it["image_id"])
        if image is None:
            raise JobError(f"image {it['image_id']} was deleted after the job was queued")
        rev = annotations.revision(session, image.id, it["revision"])
        rgb = images.rgb(image)
        label = annotations.label(rev, image)
        if label.shape != rgb.shape[:2]:
            raise JobError(f"label of image {image.id} is {label.shape}, the image {rgb.shape[:2]}")
        samples.append(Sample(name=f"img{image.id}", image=rgb))
        labels.append(label)
    return samples, labels


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
            loss={k: float(event[k]) for k in ("loss", "pce", "aff") if _finite(event.get(k)) is not None},
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
                self.cancel = jobs_svc.record_progress(s, self.job_id, progress) or self.cancel
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
    me = jobs_svc.worker_id()
    try:
        c = transact(sessions, lambda s: jobs_svc.claim(s, job_id, settings, task_id=task_id, me=me),
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
            return _run(job_id, settings, sessions, jobdir, joblog, hb, c.attempt, c.resume, me)
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
        jobs_svc.finish(s, job_id, state, **kw)
        return True

    return transact(sessions, work, retry_s, f"finishing job {job_id}")


def _run(job_id: int, settings: Settings, sessions: sessionmaker[Session], jobdir: Path, joblog: JobLog,
         hb: Heartbeat, attempt: int, resume: bool, me: str) -> dict[str, Any]:
    t_start = time.time()
    registry = ModelRegistry(settings)
    with session_scope(sessions) as s:
        job = s.get(Job, job_id)
        assert job is not None  # claimed above
        project = s.get(Project, job.project_id)
        if project is None:
            raise JobError(f"project {job.project_id} no longer exists")
        params = JobCreate.model_validate(job.params)
        inputs_path = jobdir / "inputs.json"
        if resume and inputs_path.is_file():
            inputs = Inputs(json.loads(inputs_path.read_text())["items"])
        else:
            inputs = Inputs.pin(s, project, params)
            atomic_write(inputs_path, json.dumps({"items": inputs.items}).encode())
        samples, labels = load_samples(s, settings, inputs)
        names = [c["name"] for c in project.classes]
        colors = [rgb_color(c["color"]) for c in project.classes]
        base = s.get(ModelVersion, job.base_version_id) if job.base_version_id else None
        base_number = base.number if base is not None else None
        base_path = registry.abs_path(base) if base is not None else None
        base_init = (base.provenance or {}).get("init") if base is not None else None
        variant, project_id, base_version_id = project.variant, project.id, job.base_version_id

    # where training starts
    init_bundle = pretrained = None
    if params.scratch:
        start, from_random = "scratch", True
    elif params.pretrained is not None:
        try:
            pretrained = str(registry.resolve_pretrained(params.pretrained))
        except Exception as e:
            raise JobError(f"pretrained checkpoint {params.pretrained!r}: {e}") from e
        start, from_random = f"pretrained:{params.pretrained}", False
    else:
        if base_path is None:
            raise JobError("the job's base model version was deleted")
        try:
            meta = read_bundle_meta(base_path)
        except BundleError as e:
            raise JobError(f"base model version {base_number} is unusable: {e}") from e
        if meta.config.num_classes != len(names):
            raise JobError(f"base model version {base_number} has {meta.config.num_classes} classes, the project "
                           f"{len(names)}")
        names = list(meta.config.class_names)  # train() matches names; a renamed class is the same class
        init_bundle, start, from_random = str(base_path), f"version {base_number}", base_init == "scratch"

    split = split_labels(labels, [it["sha256"] for it in inputs.items], params.val_fraction, params.seed)
    classes = ClassInfo(names, colors)
    train_split = DatasetSplit(classes, [Sample(sm.name, sm.image, sparse=t)
                                         for sm, t in zip(samples, split.train, strict=True)
                                         if (t != IGNORE_INDEX).any()], split="train", source=f"project {project_id}")
    val_samples = [Sample(sm.name, sm.image, sparse=h) for sm, h in zip(samples, split.heldout, strict=True)
                   if (h != IGNORE_INDEX).any()]
    val_split = DatasetSplit(classes, val_samples, split="heldout") if val_samples else None
    heldout_info = {"rule": "square blocks of max(8, round(min(H, W)/16)) px, held out when "
                            "rng([seed, crc32(image sha256)]) < val_fraction",
                    "val_fraction": params.val_fraction, "seed": params.seed,
                    "block_sizes": sorted({block_size(*lab.shape) for lab in labels}),
                    "train_pixels": split.train_pixels, "heldout_pixels": split.heldout_pixels,
                    "classes_kept_in_training": [names[c] for c in split.restored_classes],
                    "all_back_in_training": split.restored_all}
    joblog.write("data", images=len(samples), start=start, **heldout_info)

    lr = params.lr if params.lr is not None else (LR_SCRATCH if from_random else LR_FINETUNE)
    graceful = settings.job_soft_time_limit_s - max(30.0, 0.1 * settings.job_soft_time_limit_s)
    budget = graceful if params.time_budget_s is None else min(params.time_budget_s, graceful)
    loss = LossConfig.for_annotation(params.annotation, **({"alpha": params.alpha} if params.alpha is not None else {}))
    run_dir = jobdir / "run"
    cfg = TrainConfig(
        model=ModelConfig(variant=variant, num_classes=len(names), class_names=names, class_colors=colors),
        loss=loss, init_bundle=init_bundle, pretrained=pretrained, lr=lr,
        warmup_steps=max(1, min(100, params.steps // 10)), steps=params.steps, batch_size=params.batch_size,
        crop_size=params.crop_size, seed=params.seed, val_every=max(1, min(150, params.steps // 4)),
        log_every=1, ckpt_every=min(settings.job_checkpoint_every, params.steps), time_budget_s=budget,
        out_dir=str(run_dir), device=settings.device, num_workers=0, val_metric="miou",
    )
    resumed_from = None
    do_resume = resume and (run_dir / CHECKPOINT).is_file()
    if do_resume:
        import torch

        resumed_from = int(torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)["step"])
        joblog.write("resume", from_step=resumed_from)
    elif resume:
        joblog.write("restart", reason="no checkpoint from the earlier attempt")
    reporter = Reporter(sessions, job_id, joblog, hb, attempt, resumed_from)
    reporter.message(f"attempt {attempt}: resuming from step {resumed_from}" if do_resume else
                     f"training from {start} on {len(train_split)} images")
    try:
        from celery.exceptions import SoftTimeLimitExceeded

        # the soft time limit ends training like Ctrl-C: a final checkpoint and bundle are still written
        callbacks = Callbacks(on_progress=reporter.on_progress, should_stop=reporter.should_stop,
                              interrupt_on=(SoftTimeLimitExceeded,))
        result: TrainResult = train(cfg, train_split, val_split, callbacks, resume=do_resume, progress_bar=False)
    except TrainingError as e:
        raise JobError(str(e)) from e

    if result.status in ("stopped", "interrupted"):
        state = "cancelled" if result.status == "stopped" else "failed"
        msg = (f"stopped at step {result.steps_done} of {params.steps}; checkpoint kept at "
               f"{(run_dir / CHECKPOINT).relative_to(settings.home)}")
        joblog.write("end", state=state, steps=result.steps_done, message=msg)
        reporter.message(msg)
        _finish_if_mine(sessions, job_id, me, state, settings.job_db_retry_s,
                        error=None if state == "cancelled" else "interrupted")
        return {"job_id": job_id, "state": state, "steps": result.steps_done}

    # ---- evaluate both on the held-out pixels, write the version, register, promote if better ------
    reporter.message("comparing with the active version on the held-out labels")
    device = settings.device
    cand = heldout_scores(result.bundle, val_split, device)
    with session_scope(sessions) as s:
        proj = s.get(Project, project_id)
        active = s.get(ModelVersion, proj.active_version_id) if proj and proj.active_version_id else None
        active_id, active_number = (active.id, active.number) if active else (None, None)
        active_path = registry.abs_path(active) if active else None
    active_scores: dict[str, Any] | None
    try:
        active_scores = heldout_scores(active_path, val_split, device) if active_path is not None else None
    except BundleError as e:
        joblog.write("warning", message=f"active version {active_number} unreadable: {e}")
        active_scores = None
    promote, reason = decide(params.promote, cand, active_scores)
    outcome: dict[str, Any] = {"promoted": False, "reason": reason, "metric": "miou",
                               "heldout_pixels": split.heldout_pixels, "candidate": cand,
                               "active": active_scores or {}, "compared_with": active_number,
                               "status": result.status}
    metrics = {"heldout": cand, "heldout_pixels": split.heldout_pixels,
               "compared_with": {"version": active_number, "heldout": active_scores or {}},
               "train_best_miou": _finite(result.best_metric), "train_best_step": result.best_step,
               "steps": result.steps_done, "status": result.status}
    provenance = {
        "init": "fine_tune", "job_id": job_id, "base": start, "base_version": base_number,
        "labels": [{k: it[k] for k in ("image_id", "revision", "revision_id")} for it in inputs.items],
        "hyper_parameters": {**params.model_dump(), "lr": lr}, "train_config": cfg.to_dict(),
        "code_version": code_version(), "metrics": metrics, "heldout": heldout_info,
        "attempts": attempt, "resumed_from": resumed_from,
    }
    # The number is taken (committed) first, then the bundle is written by atomic rename, then the row
    # and the job's end are one transaction: a crash in between leaves at most an orphan directory
    # (skipped by the registry's numbering), never a row without files or a half-written version.
    with session_scope(sessions) as s:
        target = registry.allocate_dir(s, project_id)
    net, _ = load_bundle(result.bundle, device="cpu")
    save_bundle(net, target, provenance)

    def register(s: Session) -> dict[str, Any] | None:  # pure database work: safe to retry when busy
        job = s.get(Job, job_id)
        if job is None or job.worker != me or job.state in TERMINAL_STATES:
            return None
        proj = s.get(Project, project_id)
        promoted, why = promote, reason
        if promoted and params.promote == "if_better" and proj is not None and proj.active_version_id != active_id:
            promoted, why = False, "the active version changed while this job evaluated: kept as a candidate"
        version = registry.register(s, project_id, target, metrics=metrics,
                                    parent_id=base_version_id if init_bundle else None, job_id=job_id,
                                    promote=promoted, author=f"job {job_id}")
        done = {**outcome, "version": version.number, "promoted": promoted, "reason": why}
        job.progress = {**(job.progress or {}),
                        "message": f"{'promoted' if promoted else 'registered'} version {version.number}: {why}"}
        jobs_svc.finish(s, job_id, "succeeded", result_version_id=version.id, result=done)
        return done

    registered = transact(sessions, register, settings.job_db_retry_s, f"registering the version of job {job_id}")
    if registered is None:
        joblog.write("abandoned", reason="another attempt took the job over", orphan=str(target))
        return {"job_id": job_id, "state": "abandoned"}
    outcome, reason = registered, registered["reason"]
    joblog.write("result", elapsed_s=time.time() - t_start, first_progress_at=reporter.first_progress_at, **outcome)
    log.info("job %s: version %s, %s", job_id, outcome["version"], reason)
    return {"job_id": job_id, "state": "succeeded", **outcome}
