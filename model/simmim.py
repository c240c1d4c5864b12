"""SimMIM: self-supervised pretraining of the MiT encoder on a training split's own images (issue 14).

Why: from scratch, the scribble recipe shows MiT-B0 about 19 epochs of ~300 slices, and its gradients come
only from scribbled pixels (and the affinity term). Masked image modelling (Xie et al., SimMIM, CVPR 2022)
trains the encoder on every pixel of the same images, with no label and no outside weights: random 32x32
patches of the input are replaced by a learnable mask token right after the first patch embedding, and a
one-layer head (1x1 convolution + pixel shuffle) predicts their normalised pixels from the last stage; the
loss is L1 on the masked pixels only. A step costs about what a segmentation step costs, so it fits the CPU.

The output is an encoder-only ``encoder.safetensors`` in our own key layout, so it loads through the existing
``pretrained`` path (``TrainConfig.pretrained``, ``sasformer init --pretrained``, a project's seed file), where
the encoder must match and the decoder starts fresh.

For cross-validation the pretraining sees only the training folds' images (``data.folds``/``data.fold``), never
the held-out subjects': they are unlabeled there, but they are still the data a score is taken on.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .config import ModelConfig, TrainConfig
from .data import DatasetSplit
from .encoder import MiTEncoder
from .train import (
    TrainingError,
    _atomic_torch_save,
    _make_loader,
    _place,
    _rng_state,
    _seed_everything,
    _set_rng_state,
    load_data,
    lr_factor,
)

ENCODER_FILE = "encoder.safetensors"
CHECKPOINT = "checkpoint.pt"
Status = Literal["completed", "time_budget", "interrupted"]


@dataclass
class PretrainConfig(TrainConfig):
    """A training config (model, data, crops, augmentation, optimiser, schedule, seed, out_dir) plus the mask.

    Attributes:
        mask_ratio: share of the crop's mask patches replaced by the mask token (SimMIM: 0.6).
        mask_patch: side of a mask patch in input pixels (SimMIM: 32); a multiple of the first stage's
            stride 4, and the crop must be a whole number of patches.
    """

    mask_ratio: float = 0.6
    mask_patch: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        stride = encoder_stride(self.model)
        if self.mask_patch < 4 or self.mask_patch % 4:
            raise ValueError(f"mask_patch must be a positive multiple of 4, got {self.mask_patch}")
        if self.crop_size % self.mask_patch or self.crop_size % stride:
            raise ValueError(f"crop_size {self.crop_size} must be a multiple of mask_patch {self.mask_patch} "
                             f"and of the encoder's output stride {stride}")


def encoder_stride(cfg: ModelConfig) -> int:
    """Input pixels per last-stage feature: 16 with SASFormer's strides, 32 with SegFormer's."""
    out = 1
    for s in cfg.strides:
        out *= s
    return out


def random_mask(batch: int, grid: tuple[int, int], ratio: float, generator: torch.Generator) -> torch.Tensor:
    """``(batch, gh, gw)`` bool: exactly ``round(ratio * gh * gw)`` patches masked per sample, drawn uniformly."""
    n = grid[0] * grid[1]
    k = round(ratio * n)
    order = torch.rand(batch, n, generator=generator).argsort(dim=1)
    mask = torch.zeros(batch, n, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask.view(batch, *grid)


def upsample_mask(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Each patch of ``mask`` becomes a ``factor x factor`` block."""
    return mask.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)


class SimMIM(nn.Module):
    """MiT encoder with a mask token after its first patch embedding, and SimMIM's linear pixel head."""

    def __init__(self, cfg: ModelConfig, mask_patch: int = 32) -> None:
        super().__init__()
        self.encoder = MiTEncoder(cfg)
        self.mask_patch = mask_patch
        self.stride = encoder_stride(cfg)
        self.mask_token = nn.Parameter(torch.zeros(cfg.embed_dims[0]))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.head = nn.Sequential(nn.Conv2d(cfg.embed_dims[-1], 3 * self.stride**2, kernel_size=1),
                                  nn.PixelShuffle(self.stride))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` (B, 3, H, W) normalised, ``mask`` (B, H/p, W/p) bool -> reconstruction (B, 3, H, W)."""
        backbone = self.encoder.backbone
        tokens = backbone.patch_embed(x)  # (B, H/4, W/4, C1), channels last as timm's stages take it
        m = upsample_mask(mask, self.mask_patch // 4).unsqueeze(-1).to(tokens.dtype)
        tokens = tokens * (1 - m) + self.mask_token.to(tokens.dtype) * m
        for stage in backbone.stages:
            tokens = stage(tokens)
        return self.head(tokens)

    def encoder_state(self) -> dict[str, torch.Tensor]:
        """The encoder's weights under a SASFormer's key names (``encoder.backbone.*``), ready to save."""
        return {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in self.encoder.state_dict().items()}


def simmim_loss(reconstruction: torch.Tensor, image: torch.Tensor, mask_pixels: torch.Tensor) -> torch.Tensor:
    """Mean L1 error over the masked pixels (and channels) only: visible pixels are given, not predicted."""
    m = mask_pixels.unsqueeze(1).to(reconstruction.dtype)
    err = F.l1_loss(reconstruction, image, reduction="none")
    return (err * m).sum() / (m.sum() * image.shape[1]).clamp_min(1.0)


@dataclass
class PretrainResult:
    encoder_file: Path
    status: Status
    steps_done: int
    loss: float | None  # mean loss over the last logging window


def _save_encoder(model: SimMIM, path: Path, meta: dict[str, Any]) -> None:
    """Atomic: a reader (a training run, the server's seed list) never sees half a file."""
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file(model.encoder_state(), str(tmp), metadata={"format": "pt", "sasformer": json.dumps(meta)})
    os.replace(tmp, path)


def _labels_optional(data: DatasetSplit, ignore_index: int) -> DatasetSplit:
    """Labels play no part in pretraining: an image without any gets an all-unlabeled map, so the shared
    training loader (which wants a sparse label per sample) takes unlabeled image folders too."""
    return data.with_samples([s if s.sparse is not None else
                              replace(s, sparse=np.full(s.image.shape[:2], ignore_index, np.uint8)) for s in data])


def pretrain(cfg: PretrainConfig, train_data: DatasetSplit | None = None, resume: bool = False,
             progress_bar: bool = True) -> PretrainResult:
    """Pretrain the encoder with SimMIM; writes ``checkpoint.pt``, ``metrics.jsonl``, ``config.json`` and
    ``encoder.safetensors`` to ``cfg.out_dir``. ``resume`` continues from the checkpoint exactly (same crops,
    masks and RNG), so a run cut by a session's end loses at most ``ckpt_every`` steps."""
    if train_data is None:
        train_data, _ = load_data(cfg)  # with folds: the training folds only, never the held-out subjects
    train_data = _labels_optional(train_data, cfg.loss.ignore_index)
    cfg = replace(cfg, data=replace(cfg.data, target="sparse"))  # the shared loader reads sparse labels
    place = _place(cfg)
    if place.distributed:
        raise TrainingError("SimMIM pretraining runs in one process; start it without torchrun")
    device = place.device
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _seed_everything(cfg.seed)
    model = SimMIM(cfg.model, cfg.mask_patch).to(device).train()
    decay = [p for p in model.parameters() if p.ndim >= 2]  # no weight decay on norms, biases, mask token
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))
    step = 0
    ckpt_path = out / CHECKPOINT
    if resume:
        if not ckpt_path.is_file():
            raise TrainingError(f"cannot resume: no checkpoint at {ckpt_path}")
        ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        step = ckpt["step"]
        _set_rng_state(ckpt["rng"])
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2, default=str))
    use_amp = cfg.amp and device.type == "cuda"
    batches = iter(_make_loader(cfg, train_data, cfg.model, step, place))
    grid = (cfg.crop_size // cfg.mask_patch, cfg.crop_size // cfg.mask_patch)

    def save_checkpoint() -> None:
        _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "step": step, "rng": _rng_state(),
                            "config": cfg.to_dict()}, ckpt_path)

    status: Status = "completed"
    window: list[float] = []
    last_loss: float | None = None
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.steps, initial=step, desc="simmim", unit="step", disable=not progress_bar,
               dynamic_ncols=True)
    with (out / "metrics.jsonl").open("a") as log:
        try:
            while step < cfg.steps:
                x, _ = next(batches)
                x = x.to(device, non_blocking=True)
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # resumable: keyed by the step
                mask = random_mask(x.shape[0], grid, cfg.mask_ratio, gen)
                with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
                    rec = model(x, mask.to(device))
                loss = simmim_loss(rec.float(), x, upsample_mask(mask, cfg.mask_patch).to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                scheduler.step()
                step += 1
                window.append(float(loss.detach()))
                bar.update(1)
                if step % cfg.log_every == 0 or step == cfg.steps:
                    last_loss = sum(window) / len(window)
                    window.clear()
                    bar.set_postfix(loss=f"{last_loss:.4f}")
                    log.write(json.dumps({"event": "train", "step": step, "total": cfg.steps, "loss": last_loss,
                                          "lr": optimizer.param_groups[0]["lr"],
                                          "elapsed_s": time.perf_counter() - t0}) + "\n")
                    log.flush()
                if step % cfg.ckpt_every == 0:
                    save_checkpoint()
                if cfg.time_budget_s is not None and time.perf_counter() - t0 >= cfg.time_budget_s:
                    status = "time_budget"
                    break
        except KeyboardInterrupt:
            status = "interrupted"
        finally:
            bar.close()
        save_checkpoint()
        meta = {"method": "simmim", "steps": step, "status": status, "variant": cfg.model.variant,
                "strides": list(cfg.model.strides), "mask_ratio": cfg.mask_ratio, "mask_patch": cfg.mask_patch,
                "train_images": len(train_data), "data": cfg.data.train, "fold": cfg.data.fold}
        _save_encoder(model, out / ENCODER_FILE, meta)
        log.write(json.dumps({"event": "end", "status": status, "step": step, "loss": last_loss,
                              "elapsed_s": time.perf_counter() - t0}) + "\n")
    return PretrainResult(out / ENCODER_FILE, status, step, last_loss)
