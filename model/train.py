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
from .evaluate import EvalReport, evaluate
from .losses import needs_attention, sasformer_loss
from .predictor import Predictor
from .pretrained import load_pretrained
from .sasformer import SASFormer, build_sasformer

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
    """Training and validation splits from the config's dataset specs (sparse labels simulated if asked)."""
    d = cfg.data
    if not d.train:
        raise TrainingError("no training data: set data.train (e.g. 'mscmr:../shared/data/mscmr_scribble')")
    train = load_dataset(d.train, d.train_split)
    if d.simulate is not None:
        simulated = simulate_dataset(train, d.simulate, seed=d.simulate_seed, **d.simulate_params)
        train = simulated if isinstance(simulated, DatasetSplit) else train.with_samples(simulated)
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
    if not any(s.sparse is not None and (s.sparse != cfg.loss.ignore_index).any() for s in train_data) \
            and cfg.data.target == "sparse":
        raise TrainingError("the training data has no labeled pixel: draw some scribbles or points first")

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    distributed = world > 1
    if cfg.device:
        device = torch.device(cfg.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    else:
        device = torch.device("cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    is_main = rank == 0
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _seed_everything(cfg.seed + rank)
    model, mcfg = build_model(cfg, train_data)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    step, best_metric, best_step = 0, None, None
    history: list[dict[str, Any]] = []
    ckpt_path = out / CHECKPOINT
    if resume:
        if not ckpt_path.is_file():
            raise TrainingError(f"cannot resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        step, best_metric, best_step = ckpt["step"], ckpt["best_metric"], ckpt["best_step"]
        history = ckpt["history"]
        _set_rng_state(ckpt["rng"])
    if is_main:
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))

    net: torch.nn.Module = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    transform = TrainTransform(crop_size=cfg.crop_size, scale_range=cfg.scale_range, hflip_prob=cfg.hflip,
                               brightness=cfg.brightness, contrast=cfg.contrast,
                               ignore_index=cfg.loss.ignore_index)
    dataset = SparseSegDataset(train_data, transform, mcfg.mean, mcfg.std, target=cfg.data.target, seed=cfg.seed)
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, step * cfg.grad_accum, cfg.steps * cfg.grad_accum,
                               cfg.seed, rank, world)
    loader = DataLoader(_EpochIndexed(dataset), batch_sampler=sampler, num_workers=cfg.num_workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.seed))
    capture = needs_attention(cfg.loss)
    log = (out / "metrics.jsonl").open("a") if is_main else None
    data_info = {"train_images": len(train_data), "val_images": len(val_data) if val_data is not None else 0,
                 "train_labels": report(list(train_data), target=cfg.data.target)["labeled_fraction"]}

    def emit(event: dict[str, Any]) -> None:
        if log is not None:
            log.write(json.dumps(event) + "\n")
            log.flush()
        if callbacks.on_progress is not None and is_main:
            callbacks.on_progress(event)

    def save_checkpoint() -> None:
        if not is_main:
            return
        _atomic_torch_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": step,
            "best_metric": best_metric, "best_step": best_step, "history": history, "rng": _rng_state(),
            "config": cfg.to_dict(),
        }, ckpt_path)

    def provenance(status: str, report_dict: dict[str, Any] | None) -> dict[str, Any]:
        return {"train_config": cfg.to_dict(), "steps": step, "status": status, "data": data_info,
                "base": cfg.init_bundle or cfg.pretrained or "scratch",
                "metrics": {cfg.val_metric: best_metric, "best_step": best_step, "report": report_dict}}

    def run_validation() -> dict[str, Any] | None:
        nonlocal best_metric, best_step
        if val_data is None or not is_main:
            return None
        rep = _validate(model, val_data, cfg, device)
        value = rep.metric(cfg.val_metric)
        record = {"event": "val", "step": step, cfg.val_metric: value, "miou": rep.miou,
                  "mean_dice": rep.mean_dice}
        if rep.volume_confusions:
            record["volume_dice"] = rep.mean_volume_dice
        history.append(record)
        if math.isfinite(value) and (best_metric is None or value > best_metric):
            best_metric, best_step = value, step
            save_bundle(model, out / "best", provenance("best", rep.to_dict()), overwrite=True)
        emit({**record, "best": best_metric, "best_step": best_step})
        return rep.to_dict()

    status: Status = "completed"
    t0 = time.perf_counter()
    start_step = step
    last_log_t, last_log_step = t0, step
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not (progress_bar and is_main),
               dynamic_ncols=True)
    batches = iter(loader)
    try:
        while step < cfg.steps:
            optimizer.zero_grad(set_to_none=True)
            terms: dict[str, float] = {}
            for _ in range(cfg.grad_accum):
                x, y = next(batches)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                autocast = torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext()
                with autocast:
                    if capture:
                        logits, maps = net(x, return_qk=True, detach_attention=cfg.loss.detach_attention)
                    else:
                        logits, maps = net(x), None
                out_loss = sasformer_loss(logits.float(), maps, y, cfg.loss, step)
                scaler.scale(out_loss.loss / cfg.grad_accum).backward()
                for k, v in out_loss.scalars().items():
                    terms[k] = terms.get(k, 0.0) + v / cfg.grad_accum
            if cfg.grad_clip:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                now = time.perf_counter()
                rate = (step - last_log_step) / max(now - last_log_t, 1e-9)
                last_log_t, last_log_step = now, step
                event = {"event": "train", "step": step, "total": cfg.steps, **terms,
                         "lr": optimizer.param_groups[0]["lr"], "steps_per_s": rate,
                         "images_per_s": rate * cfg.batch_size * cfg.grad_accum * world,
                         "eta_s": (cfg.steps - step) / rate if rate > 0 else None,
                         "elapsed_s": now - t0, "best": best_metric}
                bar.set_postfix({k: f"{terms[k]:.3f}" for k in ("loss", "pce", "aff") if k in terms}
                                | {"lr": f"{event['lr']:.1e}"})
                emit(event)
            if step % cfg.val_every == 0 and step < cfg.steps:
                run_validation()
            if step % cfg.ckpt_every == 0:
                save_checkpoint()
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
    if status in ("completed", "time_budget") and step > start_step:
        final_report = run_validation()
    save_checkpoint()
    if is_main:
        save_bundle(model, out / "last", provenance(status, final_report), overwrite=True)
        emit({"event": "end", "status": status, "step": step, "best": best_metric, "best_step": best_step,
              "elapsed_s": time.perf_counter() - t0})
    if log is not None:
        log.close()
    if distributed:
        dist.barrier()
    bundle = out / "best" if (out / "best").is_dir() and best_metric is not None else out / "last"
    return TrainResult(bundle, status, step, best_metric, best_step, history, final_report)
