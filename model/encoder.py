"""MiT (Mix Transformer), SegFormer's encoder, built on timm's ``PyramidVisionTransformerV2``.

timm's PVTv2 with MiT's hyper-parameters *is* MiT: the same tensors, parameter count and outputs
(checked against HF ``SegformerModel``; see tests/model/test_pretrained.py). We only add two things:

* the stage-4 stride switch (SASFormer's public code keeps stage 4 at 1/16 by giving its
  overlapping patch embedding stride 1; the 3x3 kernel and weights are unchanged);
* two opt-in ways to expose every block's spatial-reduction attention ``softmax(QK^T/sqrt(d))``:
  ``capture_attention`` materialises A_l (mean over heads and blocks, ``M_l x M'_l``) for
  visualisation and tests; ``capture_qk`` only keeps each block's queries and keys, from which the
  affinity loss computes ``A_l @ P'_l`` with a second flash-attention call and never builds an
  attention matrix (see ``model.losses.propagate``). When neither is on, blocks run timm's fused SDPA
  kernel and nothing is recorded, so inference pays nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
import torch.nn.functional as F
from timm.models.pvt_v2 import Attention, PyramidVisionTransformerV2
from torch import nn

from .config import MIT_MLP_RATIO, MIT_NUM_HEADS, MIT_SR_RATIOS, ModelConfig


class StageQK(NamedTuple):
    """Queries and keys of every block of one stage, enough to recompute its attention.

    ``q``: ``(D, B, H, M, d)`` and ``k``: ``(D, B, H, M', d)`` for D blocks and H heads, with the
    query grid ``query_hw`` (M = h*w) and key grid ``key_hw`` (M' = h'*w', after spatial reduction).
    """

    q: torch.Tensor
    k: torch.Tensor
    query_hw: tuple[int, int]
    key_hw: tuple[int, int]


class MiTAttention(Attention):
    """timm's PVTv2/MiT attention, able to hand its queries and keys to a recorder.

    Same parameters and arithmetic as the parent (MiT has no linear-attention branch); the only
    addition is ``qk_sink``, a list that receives ``(q, k)`` when set.
    """

    qk_sink: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor, feat_size: list[int]) -> torch.Tensor:
        b, n, c = x.shape
        h, w = feat_size
        q = self.q(x).reshape(b, n, self.num_heads, -1).permute(0, 2, 1, 3)
        if self.sr is not None:
            x = self.sr(x.permute(0, 2, 1).reshape(b, c, h, w)).reshape(b, c, -1).permute(0, 2, 1)
            x = self.norm(x)
        k, v = self.kv(x).reshape(b, -1, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.qk_sink is not None:
            self.qk_sink.append((q, k))
        if self.fused_attn:
            x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            attn = self.attn_drop(attn.softmax(dim=-1))
            x = attn @ v
        x = x.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


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
        self._attn_modules: list[list[MiTAttention]] = []
        for stage in self.backbone.stages:
            mods = []
            for blk in stage.blocks:  # type: ignore[union-attr]
                blk.attn.__class__ = MiTAttention  # same parameters, forward that can record q and k
                mods.append(blk.attn)
            self._attn_modules.append(mods)

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
                    attn.fused_attn = False  # type: ignore[misc]
                    handles.append(attn.attn_drop.register_forward_hook(capture.hook(i)))
            yield capture
        finally:
            for h in handles:
                h.remove()
            for attn, fused in saved:
                attn.fused_attn = fused  # type: ignore[misc]

    @contextmanager
    def capture_qk(self, detach: bool = False) -> Iterator[list[list[tuple[torch.Tensor, torch.Tensor]]]]:
        """Within the block, forwards append each block's ``(q, k)`` to the yielded per-stage lists.

        The blocks keep their fused kernel; q and k are tensors autograd keeps anyway, so this
        costs no extra memory beyond references.
        """
        sinks: list[list[tuple[torch.Tensor, torch.Tensor]]] = [[] for _ in self._attn_modules]
        try:
            for sink, mods in zip(sinks, self._attn_modules, strict=True):
                for attn in mods:
                    attn.qk_sink = sink
            yield sinks
        finally:
            for mods in self._attn_modules:
                for attn in mods:
                    attn.qk_sink = None
            if detach:
                for sink in sinks:
                    sink[:] = [(q.detach(), k.detach()) for q, k in sink]

    def key_grid(self, stage: int, query_hw: tuple[int, int]) -> tuple[int, int]:
        """Grid of the keys after spatial reduction (a conv with kernel = stride = sr, no padding)."""
        sr = self.sr_ratios[stage]
        return (query_hw[0] // sr, query_hw[1] // sr) if sr > 1 else query_hw
