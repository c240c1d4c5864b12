"""SegFormer's all-MLP decode head.

Each stage's features go through a per-stage linear projection to ``decoder_dim``, are upsampled to
the stage-1 grid (1/4), concatenated (deepest first, as SegFormer and HF do), fused by a 1x1 conv +
BatchNorm + ReLU, and classified by a 1x1 conv. Module names follow HF's ``SegformerDecodeHead`` so
its checkpoints map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class MLPProjection(nn.Module):
    """``(B, C, H, W)`` -> ``(B, D, H, W)`` through a shared linear layer over channels."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = self.proj(x.flatten(2).transpose(1, 2))
        return x.transpose(1, 2).reshape(b, -1, h, w)


class SegFormerHead(nn.Module):
    """Features of the 4 stages -> logits ``(B, num_classes, H/4, W/4)``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        dim = cfg.decoder_dim
        assert dim is not None
        self.linear_c = nn.ModuleList([MLPProjection(c, dim) for c in cfg.embed_dims])
        self.linear_fuse = nn.Conv2d(dim * 4, dim, kernel_size=1, bias=False)
        self.batch_norm = nn.BatchNorm2d(dim)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(cfg.decoder_dropout)
        self.classifier = nn.Conv2d(dim, cfg.num_classes, kernel_size=1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        outs = []
        for x, proj in zip(feats, self.linear_c, strict=True):
            x = proj(x)
            if x.shape[-2:] != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            outs.append(x)
        x = self.linear_fuse(torch.cat(outs[::-1], dim=1))
        x = self.activation(self.batch_norm(x))
        return self.classifier(self.dropout(x))
