"""The one training loop: ``train(cfg, ...) -> TrainResult`` (the CLI and the worker both call it).

What a careful run does here: fixed seeds and a data order that is a pure function of
``(seed, step)``, so ``resume=True`` continues exactly where a checkpoint left off; atomic
checkpoints with optimiser, scheduler, scaler and RNG state; periodic validation with the best
weights kept as a bundle; progress (loss terms, LR, throughput, ETA) to a tqdm bar, a JSONL log and
an optional callback; cooperative stop (``should_stop``), a time budget and Ctrl-C all end in a
saved checkpoint and bundle. AMP and cudnn benchmark on CUDA; DDP when launched with torchrun.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from .bundle import load_bundle, save_bundle
from .config import ModelConfig, TrainConfig
from .data import DatasetSplit, SparseSegDataset, TrainTransform, load_dataset, report, simulate_dataset
from .data.folds import read_folds, split_fold
from .data.mix import cutmix_batch
from .evaluate import EvalReport, evaluate
from .losses import keep_close_loss, needs_attention, sasformer_loss
from .predictor import Predictor
from .pretrained import load_pretrained
from .sasformer import SASFormer, build_sasformer
from .teacher import ema_update, frozen_copy

Status = Literal["completed", "time_budget", "stopped", "interrupted"]
CHECKPOINT = "checkpoint.pt"


@dataclass
class Callbacks:
    """Hooks for the worker: progress events (dicts, also written to metrics.jsonl), a stop flag, and
    exceptions that mean "stop now" like Ctrl-C does (e.g. Celery's SoftTimeLimitExceeded), so a
    job hitting its time limit still leaves a checkpoint and a bundle."""

    on_progress: Callable[[dict[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    interrupt_on: tuple[type[BaseException], ...] = ()


@dataclass
class TrainResult:
    bundle: Path
    status: Status
    steps_done: int
    best_metric: float | None
    best_step: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    final_report: dict[str, Any] | None = None


class TrainingError(ValueError):
    """A training request that cannot run (no labels, classes that do not match the base model...)."""


# ---- data -------------------------------------------------------------------------------------------
def load_data(cfg: TrainConfig) -> tuple[DatasetSplit, DatasetSplit | None]:
    """Training and validation splits from the config's dataset specs (sparse labels simulated if asked).

    With ``data.folds``/``data.fold`` the validation split is the held-out fold of the training split
    (subject-level cross-validation), so choosing settings never looks at ``val``.
    """
    d = cfg.data
    if not d.train:
        raise TrainingError("no training data: set data.train (e.g. 'mscmr:../shared/data/mscmr_scribble')")
    train = load_dataset(d.train, d.train_split)
    if d.simulate is not None:
        simulated = simulate_dataset(train, d.simulate, seed=d.simulate_seed, **d.simulate_params)
        train = simulated if isinstance(simulated, DatasetSplit) else train.with_samples(simulated)
    if (d.fold is None) != (d.folds is None):
        raise TrainingError("cross-validation needs both data.folds (a folds file) and data.fold (its index)")
    if d.folds is not None and d.fold is not None:
        try:
            train, held_out = split_fold(train, read_folds(d.folds), d.fold)
        except (OSError, ValueError, KeyError) as e:
            raise TrainingError(f"data.folds={d.folds}, data.fold={d.fold}: {e}") from e
        if d.max_train_samples is not None:
            train = train.with_samples(list(train)[: d.max_train_samples])
        return train, held_out
    if d.max_train_samples is not None:
        train = train.with_samples(list(train)[: d.max_train_samples])
    val = None
    if d.val:
        val = load_dataset(d.val, d.val_split)
        if d.max_val_samples is not None:
            val = val.with_samples(list(val)[: d.max_val_samples])
    return train, val


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Yields micro-batches of ``(epoch, index)`` for micro-steps ``start .. total-1``.

    Sample ``p`` of the run is ``perm(epoch)[p % n]`` with ``epoch = p // n`` and ``perm`` seeded by
    ``(seed, epoch)``: any micro-step's batch can be rebuilt without replaying the ones before it.
    With DDP each rank takes its own slice of every global batch.
    """

    def __init__(self, n: int, batch: int, start: int, total: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch, self.start, self.total, self.seed = n, batch, start, total, seed
        self.rank, self.world = rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for micro in range(self.start, self.total):
            first = (micro * self.world + self.rank) * self.batch
            out = []
            for p in range(first, first + self.batch):
                epoch = p // self.n
                out.append((epoch, int(self._perm(epoch)[p % self.n])))
            yield out

    def __len__(self) -> int:
        return max(0, self.total - self.start)


class _EpochIndexed(Dataset):
    """Lets ``(epoch, index)`` keys reach ``SparseSegDataset.get`` inside DataLoader workers."""

    def __init__(self, ds: SparseSegDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        return self.ds.get(index, epoch)


# ---- optimisation -----------------------------------------------------------------------------------
def make_optimizer(model: SASFormer, cfg: TrainConfig) -> torch.optim.Optimizer:
    groups = model.param_groups(cfg.lr, cfg.head_lr_mult, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999))


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then poly decay to 0 at ``cfg.steps`` (power 1 = linear)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    return max(0.0, 1.0 - (step - cfg.warmup_steps) / span) ** cfg.lr_power


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ---- the model to train ------------------------------------------------------------------------------
def build_model(cfg: TrainConfig, train: DatasetSplit) -> tuple[SASFormer, ModelConfig]:
    """The model with the training data's classes, from a base bundle, pretrained weights or scratch."""
    classes = train.classes
    if cfg.init_bundle:
        model, bundle = load_bundle(cfg.init_bundle)
        if bundle.config.class_names != classes.names:
            raise TrainingError(
                f"base model {cfg.init_bundle} has classes {bundle.config.class_names}, "
                f"the training data has {classes.names}"
            )
        return model, bundle.config
    mcfg = replace(cfg.model, num_classes=classes.num_classes, class_names=list(classes.names),
                   class_colors=list(classes.colors))
    mcfg = ModelConfig.from_dict(mcfg.to_dict())
    model = build_sasformer(mcfg)
    if cfg.pretrained:
        load_pretrained(model, cfg.pretrained)
    return model, model.cfg


def _validate(model: SASFormer, val: DatasetSplit, cfg: TrainConfig, device: torch.device) -> EvalReport:
    predictor = Predictor(model, device=device)
    target = "dense" if all(s.dense is not None for s in val) else "sparse"
    exclude = (0,) if cfg.val_exclude_background else ()
    rep = evaluate(predictor, val, val.classes.names, target=target, flip=cfg.val_flip, exclude_from_mean=exclude)
    model.train()
    return rep


# ---- the steps of a run ------------------------------------------------------------------------------
@dataclass
class _Placement:
    """Where this process runs: its device and its place in a torchrun job (world 1 without one)."""

    device: torch.device
    rank: int
    world: int

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _place(cfg: TrainConfig) -> _Placement:
    """Pick the device, join the process group under torchrun, and set the CUDA flags."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if cfg.device:
        device = torch.device(cfg.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    return _Placement(device, rank, world)


@dataclass
class _RunState:
    """Everything a checkpoint must hold to continue a run bit for bit, plus the run's fixed parts.

    The model, optimiser, scheduler and scaler are built (and seeded) in ``_build_model_and_optimizer``
    and overwritten by ``_restore``; ``step``/``best_*``/``history`` advance as the loop runs.
    """

    model: SASFormer
    mcfg: ModelConfig
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    amp_dtype: torch.dtype
    base: torch.nn.Module | None = None  # frozen copy of the starting model (keep_base_weight); rebuilt, not saved
    teacher: torch.nn.Module | None = None  # mean teacher of the pseudo-labels (ema_teacher_decay); checkpointed
    step: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def _build_model_and_optimizer(cfg: TrainConfig, train_data: DatasetSplit, place: _Placement) -> _RunState:
    """Seed, build the model (bundle, pretrained or scratch), its optimiser, LR schedule and AMP scaler.

    Seeding happens here, before the model is built, because weight initialisation draws from the
    global RNG: a run and its resumed continuation must start from the same draws.
    """
    _seed_everything(cfg.seed + place.rank)
    model, mcfg = build_model(cfg, train_data)
    model.to(place.device).train()
    if cfg.freeze_encoder:  # only the decode head learns; its parameter groups are all the optimiser gets
        model.encoder.requires_grad_(False)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    use_amp = cfg.amp and place.device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    base = None
    if cfg.keep_base_weight > 0:  # built from init_bundle before any restore: the same base on a resume
        base = frozen_copy(model)
    teacher = frozen_copy(model) if cfg.ema_teacher_decay > 0 else None
    return _RunState(model, mcfg, optimizer, scheduler, scaler, use_amp, amp_dtype, base, teacher)


def _restore(state: _RunState, ckpt_path: Path, device: torch.device) -> None:
    """Load weights, optimiser, scheduler, scaler, progress and RNG state from a checkpoint."""
    if not ckpt_path.is_file():
        raise TrainingError(f"cannot resume: no checkpoint at {ckpt_path}")
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
    state.model.load_state_dict(ckpt["model"])
    state.optimizer.load_state_dict(ckpt["optimizer"])
    state.scheduler.load_state_dict(ckpt["scheduler"])
    state.scaler.load_state_dict(ckpt["scaler"])
    state.step, state.best_metric, state.best_step = ckpt["step"], ckpt["best_metric"], ckpt["best_step"]
    state.history = ckpt["history"]
    if state.teacher is not None:
        if ckpt.get("teacher") is None:
            raise TrainingError(f"cannot resume {ckpt_path} with ema_teacher_decay: the checkpoint has no teacher")
        state.teacher.load_state_dict(ckpt["teacher"])
    _set_rng_state(ckpt["rng"])


def _save_checkpoint(state: _RunState, cfg: TrainConfig, ckpt_path: Path) -> None:
    _atomic_torch_save({
        "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(), "scaler": state.scaler.state_dict(), "step": state.step,
        "best_metric": state.best_metric, "best_step": state.best_step, "history": state.history,
        "rng": _rng_state(), "config": cfg.to_dict(),
        "teacher": state.teacher.state_dict() if state.teacher is not None else None,
    }, ckpt_path)


def _make_loader(cfg: TrainConfig, train_data: DatasetSplit, mcfg: ModelConfig, start_step: int,
                 place: _Placement) -> DataLoader:
    """The augmented training batches from micro-step ``start_step * grad_accum`` on (see StepBatchSampler)."""
    transform = TrainTransform(crop_size=cfg.crop_size, scale_range=cfg.scale_range, hflip_prob=cfg.hflip,
                               brightness=cfg.brightness, contrast=cfg.contrast,
                               rotate_deg=cfg.rotate_deg, rotate_prob=cfg.rotate_prob,
                               ignore_index=cfg.loss.ignore_index)
    dataset = SparseSegDataset(train_data, transform, mcfg.mean, mcfg.std, target=cfg.data.target, seed=cfg.seed)
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, start_step * cfg.grad_accum,
                               cfg.steps * cfg.grad_accum, cfg.seed, place.rank, place.world)
    return DataLoader(_EpochIndexed(dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
                      pin_memory=place.device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))


def _train_step(state: _RunState, net: torch.nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
                cfg: TrainConfig, device: torch.device, capture: bool) -> dict[str, float]:
    """One optimiser step over ``grad_accum`` micro-batches; returns the loss terms averaged over them."""
    state.optimizer.zero_grad(set_to_none=True)
    terms: dict[str, float] = {}
    for micro in range(cfg.grad_accum):
        x, y = next(batches)
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if cfg.cutmix_prob > 0:  # seeded by (seed, step, micro): a resumed run mixes as the original did
            gen = torch.Generator().manual_seed((cfg.seed * 1_000_003 + state.step) * 64 + micro)
            x, y = cutmix_batch(x, y, cfg.cutmix_prob, gen)
        autocast = torch.autocast("cuda", dtype=state.amp_dtype) if state.use_amp else nullcontext()
        with autocast:
            if capture:
                logits, maps = net(x, return_qk=True, detach_attention=cfg.loss.detach_attention)
            else:
                logits, maps = net(x), None
        teacher = None
        if state.teacher is not None:  # the pseudo-labels' source: the weight average, on the same batch
            with torch.no_grad(), autocast:
                t_logits, t_maps = state.teacher(x, return_qk=True, detach_attention=True)
            teacher = (t_logits.float(), t_maps)
        out_loss = sasformer_loss(logits.float(), maps, y, cfg.loss, state.step, teacher)
        total, scalars = out_loss.loss, out_loss.scalars()
        if state.base is not None:
            with torch.no_grad(), autocast:
                base_logits = state.base(x)
            keep = keep_close_loss(logits, base_logits, y, cfg.loss.ignore_index)
            total = total + cfg.keep_base_weight * keep
            scalars.update(keep=float(keep.detach()), loss=float(total.detach()))
        state.scaler.scale(total / cfg.grad_accum).backward()
        for k, v in scalars.items():
            terms[k] = terms.get(k, 0.0) + v / cfg.grad_accum
    if cfg.grad_clip:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.step += 1
    if state.teacher is not None:
        terms["teacher_decay"] = ema_update(state.teacher, state.model, cfg.ema_teacher_decay, state.step)
    return terms


class _Run:
    """The side effects of one run: the JSONL log and callback, validation with the best bundle, and
    the checkpoint and final bundles. Only rank 0 writes; the other ranks call these as no-ops."""

    def __init__(self, cfg: TrainConfig, state: _RunState, place: _Placement, out: Path,
                 train_data: DatasetSplit, val_data: DatasetSplit | None, callbacks: Callbacks) -> None:
        self.cfg, self.state, self.place, self.out = cfg, state, place, out
        self.val_data, self.callbacks = val_data, callbacks
        self.ckpt_path = out / CHECKPOINT
        self.log = (out / "metrics.jsonl").open("a") if place.is_main else None
        self.data_info = {"train_images": len(train_data),
                          "val_images": len(val_data) if val_data is not None else 0,
                          "train_labels": report(list(train_data), target=cfg.data.target)["labeled_fraction"]}

    def emit(self, event: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.write(json.dumps(event) + "\n")
            self.log.flush()
        if self.callbacks.on_progress is not None and self.place.is_main:
            self.callbacks.on_progress(event)

    def close(self) -> None:
        if self.log is not None:
            self.log.close()

    def save_checkpoint(self) -> None:
        if self.place.is_main:
            _save_checkpoint(self.state, self.cfg, self.ckpt_path)

    def provenance(self, status: str, report_dict: dict[str, Any] | None) -> dict[str, Any]:
        s, cfg = self.state, self.cfg
        return {"train_config": cfg.to_dict(), "steps": s.step, "status": status, "data": self.data_info,
                "base": cfg.init_bundle or cfg.pretrained or "scratch",
                "metrics": {cfg.val_metric: s.best_metric, "best_step": s.best_step, "report": report_dict}}

    def validate(self) -> dict[str, Any] | None:
        """Score the current weights on val, log them, keep ``best/`` if they beat the best so far."""
        s, cfg = self.state, self.cfg
        if self.val_data is None or not self.place.is_main:
            return None
        rep = _validate(s.model, self.val_data, cfg, self.place.device)
        value = rep.metric(cfg.val_metric)
        record = {"event": "val", "step": s.step, cfg.val_metric: value, "miou": rep.miou,
                  "mean_dice": rep.mean_dice}
        if rep.volume_confusions:
            record["volume_dice"] = rep.mean_volume_dice
        s.history.append(record)
        if math.isfinite(value) and (s.best_metric is None or value > s.best_metric):
            s.best_metric, s.best_step = value, s.step
            save_bundle(s.model, self.out / "best", self.provenance("best", rep.to_dict()), overwrite=True)
        self.emit({**record, "best": s.best_metric, "best_step": s.best_step})
        return rep.to_dict()

    def log_train(self, terms: dict[str, float], t0: float, since: tuple[float, int], bar: tqdm) -> float:
        """Emit a ``train`` event: loss terms, LR, throughput since ``since = (time, step)``, ETA.

        Returns the time the rate was measured at, the start of the next rate's window."""
        s, cfg = self.state, self.cfg
        now = time.perf_counter()
        rate = (s.step - since[1]) / max(now - since[0], 1e-9)
        event = {"event": "train", "step": s.step, "total": cfg.steps, **terms,
                 "lr": s.optimizer.param_groups[0]["lr"], "steps_per_s": rate,
                 "images_per_s": rate * cfg.batch_size * cfg.grad_accum * self.place.world,
                 "eta_s": (cfg.steps - s.step) / rate if rate > 0 else None,
                 "elapsed_s": now - t0, "best": s.best_metric}
        bar.set_postfix({k: f"{terms[k]:.3f}" for k in ("loss", "pce", "aff") if k in terms}
                        | {"lr": f"{event['lr']:.1e}"})
        self.emit(event)
        return now

    def save_outputs(self, status: Status, final_report: dict[str, Any] | None, t0: float) -> None:
        """The end of every run, however it stopped: checkpoint, ``last/`` bundle and an ``end`` event."""
        s = self.state
        self.save_checkpoint()
        if self.place.is_main:
            save_bundle(s.model, self.out / "last", self.provenance(status, final_report), overwrite=True)
            self.emit({"event": "end", "status": status, "step": s.step, "best": s.best_metric,
                       "best_step": s.best_step, "elapsed_s": time.perf_counter() - t0})


def _check_labels(cfg: TrainConfig, train_data: DatasetSplit) -> None:
    if not any(s.sparse is not None and (s.sparse != cfg.loss.ignore_index).any() for s in train_data) \
            and cfg.data.target == "sparse":
        raise TrainingError("the training data has no labeled pixel: draw some scribbles or points first")


# ---- the loop ----------------------------------------------------------------------------------------
def train(
    cfg: TrainConfig,
    train_data: DatasetSplit | None = None,
    val_data: DatasetSplit | None = None,
    callbacks: Callbacks | None = None,
    resume: bool = False,
    progress_bar: bool = True,
) -> TrainResult:
    """Train a SASFormer and return the saved bundle (the best on validation, else the last).

    Args:
        cfg: the run's configuration; ``cfg.out_dir`` receives ``checkpoint.pt``, ``metrics.jsonl``,
            ``best/`` and ``last/`` bundles and ``config.json``.
        train_data, val_data: in-memory splits (the worker passes a project's labels); loaded from
            ``cfg.data`` when omitted.
        callbacks: progress events and a cooperative stop flag.
        resume: continue from ``out_dir/checkpoint.pt`` exactly (same data order, RNG, optimiser).
    """
    callbacks = callbacks or Callbacks()
    if train_data is None:
        train_data, loaded_val = load_data(cfg)
        val_data = val_data if val_data is not None else loaded_val
    _check_labels(cfg, train_data)

    place = _place(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = _build_model_and_optimizer(cfg, train_data, place)
    if resume:
        _restore(state, out / CHECKPOINT, place.device)
    if place.is_main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))

    net: torch.nn.Module = state.model
    if place.distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            state.model, device_ids=[place.device.index] if place.device.type == "cuda" else None)
    loader = _make_loader(cfg, train_data, state.mcfg, state.step, place)
    capture = needs_attention(cfg.loss)
    run = _Run(cfg, state, place, out, train_data, val_data, callbacks)

    status: Status = "completed"
    t0 = time.perf_counter()
    start_step = state.step
    since = (t0, state.step)
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train", unit="step",
               disable=not (progress_bar and place.is_main), dynamic_ncols=True)
    batches = iter(loader)
    try:
        while state.step < cfg.steps:
            terms = _train_step(state, net, batches, cfg, place.device, capture)
            bar.update(1)
            step = state.step
            if step % cfg.log_every == 0 or step == cfg.steps:
                since = (run.log_train(terms, t0, since, bar), step)
            if step % cfg.val_every == 0 and step < cfg.steps:
                run.validate()
            if step % cfg.ckpt_every == 0:
                run.save_checkpoint()
            if callbacks.should_stop is not None and callbacks.should_stop():
                status = "stopped"
                break
            if cfg.time_budget_s is not None and time.perf_counter() - t0 >= cfg.time_budget_s:
                status = "time_budget"
                break
    except (KeyboardInterrupt, *callbacks.interrupt_on):  # type: ignore[misc]
        status = "interrupted"
    finally:
        bar.close()

    final_report = None
    if status in ("completed", "time_budget") and state.step > start_step:
        final_report = run.validate()
    run.save_outputs(status, final_report, t0)
    run.close()
    if place.distributed:
        dist.barrier()
    best_metric = state.best_metric
    bundle = out / "best" if (out / "best").is_dir() and best_metric is not None else out / "last"
    return TrainResult(bundle, status, state.step, best_metric, state.best_step, state.history, final_report)
