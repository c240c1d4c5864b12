"""SASFormer: a SegFormer whose encoder attention can be returned for the affinity loss.

``build_sasformer(cfg)`` is the only constructor other code uses. ``forward`` returns plain tensors:
logits at 1/4 resolution and, on request, one attention tensor per stage shaped
``(B, h_l, w_l, h'_l, w'_l)`` (query grid x key grid), so the grids travel with the maps.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .decoder import SegFormerHead
from .encoder import MiTEncoder, StageQK


class SASFormer(nn.Module):
    """MiT encoder + all-MLP head. Inference uses the decoder output alone (the paper's Sec. 3.1)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = MiTEncoder(cfg)
        self.decode_head = SegFormerHead(cfg)

    def forward(
        self,
        pixel_values: torch.Tensor,
        return_attention: bool = False,
        detach_attention: bool = False,
        return_qk: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]] | tuple[torch.Tensor, list[StageQK]]:
        """Logits for a normalised batch.

        Args:
            pixel_values: ``(B, 3, H, W)``, normalised with ``cfg.mean``/``cfg.std``.
            return_attention: also return A_1..A_4 (mean over heads and blocks, post-softmax).
            detach_attention: cut the graph at the attention (the paper trains through it).
            return_qk: instead of maps, return each stage's queries and keys (``StageQK``); the
                training path, since the affinity loss can then propagate labels along the
                attention without materialising it (``model.losses.propagate``).

        Returns:
            logits ``(B, num_classes, ceil(H/4), ceil(W/4))``; with ``return_attention``, also a list of
            four tensors ``(B, h_l, w_l, h'_l, w'_l)`` whose rows sum to 1 over the key grid; with
            ``return_qk``, a list of four ``StageQK``.
        """
        if return_qk:
            with self.encoder.capture_qk(detach=detach_attention) as sinks:
                feats = self.encoder(pixel_values)
            logits = self.decode_head(feats)
            qks = []
            for i, (feat, sink) in enumerate(zip(feats, sinks, strict=True)):
                hq, wq = feat.shape[-2:]
                q = torch.stack([q for q, _ in sink])
                k = torch.stack([k for _, k in sink])
                qks.append(StageQK(q, k, (hq, wq), self.encoder.key_grid(i, (hq, wq))))
            return logits, qks
        if not return_attention:
            return self.decode_head(self.encoder(pixel_values))
        with self.encoder.capture_attention(detach=detach_attention) as capture:
            feats = self.encoder(pixel_values)
        logits = self.decode_head(feats)
        maps = []
        for i, (feat, attn) in enumerate(zip(feats, capture.stage_means(), strict=True)):
            hq, wq = feat.shape[-2:]
            hk, wk = self.encoder.key_grid(i, (hq, wq))
            maps.append(attn.reshape(attn.shape[0], hq, wq, hk, wk))
        return logits, maps

    def param_groups(self, base_lr: float, head_lr_mult: float = 10.0, weight_decay: float = 0.0) -> list[dict]:
        """Encoder at ``base_lr``, decode head at ``head_lr_mult`` x (the public code's 10x head rate).

        Norms and biases get no weight decay (SegFormer's recipe).
        """
        groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            part = "head" if name.startswith("decode_head.") else "encoder"
            no_decay = p.ndim <= 1
            groups.setdefault((part, no_decay), []).append(p)
        out = []
        for (part, no_decay), params in groups.items():
            out.append(
                {
                    "params": params,
                    "lr": base_lr * (head_lr_mult if part == "head" else 1.0),
                    "weight_decay": 0.0 if no_decay else weight_decay,
                    "name": f"{part}{'_no_decay' if no_decay else ''}",
                }
            )
        return out


def _build(cfg: ModelConfig) -> SASFormer:
    return SASFormer(cfg)


def build_sasformer(cfg: ModelConfig | None = None, **overrides: object) -> SASFormer:
    """Build a SASFormer from a config (or keyword overrides of the default one)."""
    if cfg is None:
        cfg = ModelConfig(**overrides)  # type: ignore[arg-type]
    elif overrides:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), **overrides})
    return _build(cfg)


def encoder_param_count(model: SASFormer) -> int:
    return sum(p.numel() for p in model.encoder.parameters())
