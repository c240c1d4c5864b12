"""MiT (Mix Transformer), SegFormer's encoder, built on timm's ``PyramidVisionTransformerV2``.

timm's PVTv2 with MiT's hyper-parameters *is* MiT: the same tensors, parameter count and outputs
(checked against HF ``SegformerModel``; see tests/model/test_pretrained.py). We only add two things:

* the stage-4 stride switch (SASFormer's public code keeps stage 4 at 1/16 by giving its
  overlapping patch embedding stride 1; the 3x3 kernel and weights are unchanged);
* opt-in capture of every block's spatial-reduction attention ``softmax(QK^T/sqrt(d))`` for the
  affinity loss. When capture is off the blocks run timm's fused SDPA kernel and no hook exists, so
  inference pays nothing for it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from timm.models.pvt_v2 import PyramidVisionTransformerV2
from torch import nn

from .config import MIT_MLP_RATIO, MIT_NUM_HEADS, MIT_SR_RATIOS, ModelConfig


class AttentionCapture:
    """Accumulates A_l = mean over heads and blocks of one stage's attention (paper Eq. 3).

    A forward hook on each block's ``attn_drop`` sees the post-softmax attention
    ``(B, heads, M_l, M'_l)`` as its input (before dropout). Only the running per-stage mean is kept,
    so memory is one ``(B, M_l, M'_l)`` map per stage plus what autograd retains.
    """

    def __init__(self, depths: tuple[int, ...], detach: bool) -> None:
        self.depths = depths
        self.detach = detach
        self.sums: list[torch.Tensor | None] = [None] * len(depths)

    def hook(self, stage: int):  # noqa: ANN201 - torch hook signature
        def _hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            attn = inputs[0]
            if self.detach:
                attn = attn.detach()
            mean_heads = attn.mean(dim=1)
            prev = self.sums[stage]
            self.sums[stage] = mean_heads if prev is None else prev + mean_heads

        return _hook

    def stage_means(self) -> list[torch.Tensor]:
        out = []
        for i, s in enumerate(self.sums):
            if s is None:
                raise RuntimeError(f"no attention captured for stage {i + 1}")
            out.append(s / self.depths[i])
        return out


class MiTEncoder(nn.Module):
    """Four-stage MiT encoder returning ``[B, C_i, H/s_i, W/s_i]`` features for i = 1..4."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_dims = cfg.embed_dims
        self.depths = cfg.depths
        self.sr_ratios = MIT_SR_RATIOS
        eps = cfg.layer_norm_eps
        self.backbone = PyramidVisionTransformerV2(
            in_chans=cfg.in_chans,
            num_classes=0,
            depths=cfg.depths,
            embed_dims=cfg.embed_dims,
            num_heads=MIT_NUM_HEADS,
            sr_ratios=MIT_SR_RATIOS,
            mlp_ratios=(MIT_MLP_RATIO,) * 4,
            qkv_bias=True,
            drop_path_rate=cfg.drop_path_rate,
            norm_layer=functools.partial(nn.LayerNorm, eps=eps),  # type: ignore[arg-type]
        )
        if cfg.hf_layer_norm:
            for m in self.backbone.modules():
                if isinstance(m, nn.LayerNorm):
                    m.eps = eps
        last = self.backbone.get_submodule("stages.3.downsample.proj")
        assert isinstance(last, nn.Conv2d)
        last.stride = (cfg.strides[3], cfg.strides[3])
        self._attn_modules = [
            [blk.attn for blk in stage.blocks] for stage in self.backbone.stages  # type: ignore[union-attr]
        ]

    @property
    def patch_embed(self) -> nn.Module:
        return self.backbone.patch_embed

    @property
    def stages(self) -> nn.Sequential:
        return self.backbone.stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.backbone.patch_embed(x)
        feats = []
        for stage in self.backbone.stages:
            x = stage(x)
            feats.append(x)
        return feats

    @contextmanager
    def capture_attention(self, detach: bool = False) -> Iterator[AttentionCapture]:
        """Within the block, forwards record each stage's mean attention into the yielded capture.

        Fused attention is switched off only for the duration (the explicit softmax is what the
        hooks see) and restored afterwards, hooks removed, even if the forward raises.
        """
        capture = AttentionCapture(self.depths, detach)
        handles = []
        saved = []
        try:
            for i, mods in enumerate(self._attn_modules):
                for attn in mods:
                    saved.append((attn, attn.fused_attn))
                    attn.fused_attn = False
                    handles.append(attn.attn_drop.register_forward_hook(capture.hook(i)))
            yield capture
        finally:
            for h in handles:
                h.remove()
            for attn, fused in saved:
                attn.fused_attn = fused

    def key_grid(self, stage: int, query_hw: tuple[int, int]) -> tuple[int, int]:
        """Grid of the keys after spatial reduction (a conv with kernel = stride = sr, no padding)."""
        sr = self.sr_ratios[stage]
        return (query_hw[0] // sr, query_hw[1] // sr) if sr > 1 else query_hw
