"""SASFormer's training objective: partial cross-entropy + alpha * affinity loss (paper Eq. 1-7).

Shapes: logits ``(B, C, h, w)`` (decoder output, 1/4 resolution), target ``(B, H, W)`` int64 with
``ignore_index`` on unlabeled pixels. The attention of stage l comes in one of two forms:

* a map ``(B, h_l, w_l, h'_l, w'_l)`` = A_l, from ``SASFormer.forward(..., return_attention=True)``;
* a ``StageQK`` (each block's queries and keys) from ``forward(..., return_qk=True)``. Then
  ``Y_l = A_l @ P'_l`` is computed as the mean over blocks and heads of
  ``softmax(q k^T / sqrt(d)) @ P'_l`` by ``scaled_dot_product_attention``, with ``P'_l`` as the
  values (zero-padded to the head width so the flash kernel applies). That is the same number
  (A_l is linear in the per-head softmaxes) with the same gradients into q, k and P', but no
  ``M_l x M'_l`` matrix is ever stored: the affinity loss costs a few percent of a train step
  instead of a third (bench/model_speed.py).

Where we depart from the public code (see ../docs/architecture.md):
* partial CE is computed at the *input* resolution (logits upsampled bilinearly), not on 1/4-size
  logits against nearest-downsampled targets, so no thin scribble pixel or single click is lost;
* a query cell counts as labeled (and is left out of L_aff) if *any* of its pixels is labeled,
  instead of whichever pixel nearest-neighbour sampling happens to hit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import LossConfig
from .encoder import StageQK
from .pu import negative_label_loss

_EPS = 1e-8


def partial_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Mean CE over labeled pixels only, at the target's resolution.

    Returns 0 (still attached to the graph) when a batch has no labeled pixel, rather than NaN.
    """
    if logits.shape[-2:] != target.shape[-2:]:
        logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
    labeled = target != ignore_index
    if not bool(labeled.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="mean")


def unlabeled_cells(target: torch.Tensor, grid: tuple[int, int], ignore_index: int = 255) -> torch.Tensor:
    """``(B, h*w)`` bool: cells of a ``grid`` over the image that contain no labeled pixel.

    Uses adaptive max pooling of the labeled mask, which matches how bilinear resizing maps image
    pixels onto the grid closely enough for a mask and never drops an isolated labeled pixel.
    """
    labeled = (target != ignore_index).float().unsqueeze(1)
    pooled = F.adaptive_max_pool2d(labeled, grid)
    return (pooled.flatten(1) == 0)


def keep_close_loss(logits: torch.Tensor, base_logits: torch.Tensor, target: torch.Tensor,
                    ignore_index: int = 255) -> torch.Tensor:
    """KL(base || model) over the classes, averaged over the cells with no labeled pixel.

    Why: a fine-tune on a handful of labeled images otherwise pulls every unlabeled image towards them
    (learning without forgetting, Li & Hoiem 2017): the labels teach the scribbled pixels, and everywhere
    else the model is asked to keep predicting what the starting model did. 0 (still attached) when every
    cell holds a label.
    """
    keep = unlabeled_cells(target, (logits.shape[-2], logits.shape[-1]), ignore_index)  # (B, h*w)
    if not bool(keep.any()):
        return logits.sum() * 0.0
    log_p = F.log_softmax(logits.float(), dim=1).flatten(2).transpose(1, 2)[keep]  # (N, C)
    log_q = F.log_softmax(base_logits.float(), dim=1).flatten(2).transpose(1, 2)[keep]
    return (log_q.exp() * (log_q - log_p)).sum(-1).mean()


def _to_grid(logits: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize logits bilinearly to a grid and lay them out as ``(B, h*w, C)`` rows."""
    if logits.shape[-2:] != grid:
        logits = F.interpolate(logits, size=grid, mode="bilinear", align_corners=False)
    return logits.flatten(2).transpose(1, 2)


def _attend(qk: StageQK, values: torch.Tensor, exclude_self: bool) -> torch.Tensor:
    """Mean over blocks and heads of ``softmax(q k^T / sqrt(d)) @ values``: ``(B, M', C) -> (B, M, C)``."""
    q, k = qk.q, qk.k
    depth, b, heads, m, d = q.shape
    mk = k.shape[3]
    c = values.shape[-1]
    width = -(-c // d) * d  # pad the classes to whole head widths: the flash kernel needs E_v == E
    v = F.pad(values, (0, width - c)).to(q.dtype)
    mask = None
    if exclude_self and m == mk:
        mask = ~torch.eye(m, dtype=torch.bool, device=q.device)
    q2, k2 = q.reshape(depth * b, heads, m, d), k.reshape(depth * b, heads, mk, d)
    outs = []
    for start in range(0, width, d):
        vv = v[..., start:start + d].unsqueeze(0).unsqueeze(2).expand(depth, b, heads, mk, d)
        outs.append(F.scaled_dot_product_attention(q2, k2, vv.reshape(depth * b, heads, mk, d), attn_mask=mask))
    y = torch.cat(outs, -1)[..., :c] if len(outs) > 1 else outs[0][..., :c]
    return y.reshape(depth, b, heads, m, c).mean(dim=(0, 2)).to(values.dtype)


def propagate(attn: torch.Tensor | StageQK, logits: torch.Tensor, normalisation: str = "double",
              exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4-6 for one stage: return ``(Y*, P*)``, both ``(B, M_l, C)`` distributions over classes.

    ``attn`` is a map ``(B, h, w, h', w')`` or a ``StageQK``. ``exclude_self`` (stages whose query
    and key grids coincide) gives each query's own key no weight in every head's softmax; it needs
    the ``StageQK`` form, since a head-averaged map can no longer be renormalised per head.
    """
    if isinstance(attn, StageQK):
        (hq, wq), (hk, wk) = attn.query_hw, attn.key_hw

        def apply(values: torch.Tensor) -> torch.Tensor:
            return _attend(attn, values, exclude_self)
    else:
        b, hq, wq, hk, wk = attn.shape
        if exclude_self and (hq, wq) == (hk, wk):
            raise ValueError("exclude_self needs queries and keys (forward(..., return_qk=True)), not maps")
        a = attn.reshape(b, hq * wq, hk * wk)

        def apply(values: torch.Tensor) -> torch.Tensor:
            return torch.bmm(a, values.to(a.dtype))
    p_query = _to_grid(logits, (hq, wq))
    p_key = _to_grid(logits, (hk, wk))
    if normalisation == "logit":
        return apply(p_key).softmax(-1), p_query.softmax(-1)
    y = apply(p_key.softmax(-1))
    p = p_query.softmax(-1)
    if normalisation == "double":
        return y.softmax(-1), p.softmax(-1)
    return y, p


def _distance(y: torch.Tensor, p: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-cell distance, summed over classes: ``(B, M)``."""
    if kind == "l1":
        return (y - p).abs().sum(-1)
    if kind == "l2":
        return (y - p).pow(2).sum(-1)
    if kind == "kl":
        return (y * (y.clamp_min(_EPS).log() - p.clamp_min(_EPS).log())).sum(-1)
    if kind == "ce":
        return -(y * p.clamp_min(_EPS).log()).sum(-1)
    raise ValueError(f"unknown distance {kind!r}")


def _query_grid(attn: torch.Tensor | StageQK) -> tuple[int, int]:
    return attn.query_hw if isinstance(attn, StageQK) else (attn.shape[1], attn.shape[2])


def affinity_loss(
    logits: torch.Tensor,
    attentions: list[torch.Tensor] | list[StageQK],
    target: torch.Tensor | None,
    cfg: LossConfig,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """L_aff = mean over the chosen stages of the distance between Y*_l and P*_l (Eq. 7).

    The distance is averaged over the cells that take part (unlabeled ones when
    ``cfg.unlabeled_only``; all cells otherwise). A stage with no such cell contributes 0.

    Returns the loss and the per-stage values (keys 1-4) for logging.
    """
    per_stage: dict[int, torch.Tensor] = {}
    for stage in cfg.stages:
        attn = attentions[stage - 1]
        if cfg.detach_attention:
            attn = StageQK(attn.q.detach(), attn.k.detach(), attn.query_hw, attn.key_hw) \
                if isinstance(attn, StageQK) else attn.detach()
        y, p = propagate(attn, logits, cfg.normalisation, cfg.exclude_self)
        d = _distance(y, p, cfg.distance)
        if cfg.unlabeled_only and target is not None:
            mask = unlabeled_cells(target, _query_grid(attn), cfg.ignore_index).to(d.dtype)
            per_stage[stage] = (d * mask).sum() / mask.sum().clamp_min(1.0)
        else:
            per_stage[stage] = d.mean()
    if not per_stage:
        return logits.sum() * 0.0, per_stage
    total = torch.stack(list(per_stage.values())).mean()
    return total, per_stage


def propagated_pseudo_labels(
    logits: torch.Tensor,
    attentions: list[torch.Tensor] | list[StageQK],
    target: torch.Tensor,
    cfg: LossConfig,
    source_logits: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CE of the logits against confident propagated labels on unlabeled pixels (``LossConfig.pseudo_*``).

    Per affinity stage: ``Y = A @ softmax(logits')`` (single normalisation, so ``Y`` is the
    attention-weighted mean of the neighbours' class probabilities; no gradient flows through it,
    it is a target), resized bilinearly to the logits' grid (the decoder's 1/4 resolution), gated by
    ``max Y > pseudo_threshold`` and restricted to pixels of that grid whose image cell holds no
    label (``unlabeled_cells``). The CE is averaged over the gated pixels, then over stages.

    ``source_logits`` (with ``attentions`` of the same model): the targets come from another model, e.g.
    the mean teacher (``model.teacher``), and the CE is on ``logits``; default: the student's own.

    Returns ``(loss, fraction of unlabeled logit pixels that passed the gate)``; the loss is 0
    (attached) when no pixel passes, e.g. early in training when every prediction is unsure.
    """
    src = logits if source_logits is None else source_logits
    if src.shape != logits.shape:
        raise ValueError(f"source logits {tuple(src.shape)} must match the logits {tuple(logits.shape)}")
    b, c, h, w = logits.shape
    unlabeled = unlabeled_cells(target, (h, w), cfg.ignore_index).view(b, h, w)
    losses, passed = [], []
    for stage in cfg.stages:
        attn = attentions[stage - 1]
        with torch.no_grad():
            if isinstance(attn, StageQK):
                attn = StageQK(attn.q.detach(), attn.k.detach(), attn.query_hw, attn.key_hw)
            else:
                attn = attn.detach()
            y, _ = propagate(attn, src.detach(), "single", cfg.exclude_self)
            hq, wq = _query_grid(attn)
            y = y.transpose(1, 2).reshape(b, c, hq, wq)
            if (hq, wq) != (h, w):
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
            conf, label = y.max(1)
            gate = unlabeled & (conf > cfg.pseudo_threshold)
            pseudo = torch.where(gate, label, torch.full_like(label, cfg.ignore_index))
        n = gate.sum()
        passed.append(n.float() / unlabeled.sum().clamp_min(1))
        if bool(n > 0):
            losses.append(F.cross_entropy(logits, pseudo, ignore_index=cfg.ignore_index, reduction="mean"))
        else:
            losses.append(logits.sum() * 0.0)
    if not losses:
        return logits.sum() * 0.0, logits.new_zeros(())
    return torch.stack(losses).mean(), torch.stack(passed).mean()


@dataclass
class LossOutput:
    """Total loss and its terms; ``alpha`` is the weight actually applied at this step.

    ``pseudo``/``pseudo_frac``/``pseudo_weight`` are set only when the pseudo-label term is on, so the
    logged terms of runs without it are unchanged.
    """

    loss: torch.Tensor
    pce: torch.Tensor
    aff: torch.Tensor
    alpha: float
    aff_per_stage: dict[int, torch.Tensor]
    pseudo: torch.Tensor | None = None
    pseudo_frac: torch.Tensor | None = None
    pseudo_weight: float = 0.0
    pu: torch.Tensor | None = None
    pu_stats: dict[str, float] | None = None
    pu_weight: float = 0.0

    def scalars(self) -> dict[str, float]:
        out = {name: float(getattr(self, name).detach()) for name in ("loss", "pce", "aff")}
        out["alpha"] = self.alpha
        out.update({f"aff_s{k}": float(v.detach()) for k, v in self.aff_per_stage.items()})
        if self.pseudo is not None and self.pseudo_frac is not None:
            out.update(pseudo=float(self.pseudo.detach()), pseudo_frac=float(self.pseudo_frac),
                       pseudo_weight=self.pseudo_weight)
        if self.pu is not None:
            out.update(pu=float(self.pu.detach()), pu_weight=self.pu_weight, **(self.pu_stats or {}))
        return out


def sasformer_loss(
    logits: torch.Tensor,
    attentions: list[torch.Tensor] | list[StageQK] | None,
    target: torch.Tensor,
    cfg: LossConfig,
    step: int = 0,
    teacher: tuple[torch.Tensor, list[torch.Tensor] | list[StageQK]] | None = None,
) -> LossOutput:
    """``pCE + alpha(step) * L_aff [+ pseudo_weight(step) * L_pseudo] [+ pu_weight(step) * L_PU]``.

    With ``alpha == 0`` (and no pseudo-label term) or no attention, this is plain pCE. ``teacher``:
    ``(logits, attentions)`` of the mean teacher on the same batch; the pseudo-labels are then its
    propagated labels instead of the student's.
    """
    pce = partial_cross_entropy(logits, target, cfg.ignore_index)
    alpha = cfg.alpha_at(step)
    source = teacher[1] if teacher is not None else attentions
    use_pseudo = cfg.pseudo_weight > 0 and source is not None and bool(cfg.stages)
    if attentions is None or cfg.alpha == 0 or not cfg.stages:
        zero = pce.detach() * 0.0
        out = LossOutput(pce, pce, zero, alpha, {})
    else:
        aff, per_stage = affinity_loss(logits, attentions, target, cfg)
        out = LossOutput(pce + alpha * aff, pce, aff, alpha, per_stage)
    if use_pseudo and source is not None:
        weight = cfg.pseudo_weight_at(step)
        pseudo, frac = propagated_pseudo_labels(logits, source, target, cfg,
                                                teacher[0] if teacher is not None else None)
        out.loss = out.loss + weight * pseudo
        out.pseudo, out.pseudo_frac, out.pseudo_weight = pseudo, frac, weight
    if cfg.pu_weight > 0:  # logged from step 0 (weight 0 before pu_start_step) so the curve shows the onset
        weight = cfg.pu_weight_at(step)
        unlabeled = unlabeled_cells(target, (logits.shape[-2], logits.shape[-1]), cfg.ignore_index)
        pu, stats = negative_label_loss(logits, target, unlabeled, cfg.pu_skip, cfg.ignore_index, cfg.pu_shares)
        out.loss = out.loss + weight * pu
        out.pu, out.pu_stats, out.pu_weight = pu, stats, weight
    return out


def needs_attention(cfg: LossConfig) -> bool:
    """Whether a forward must capture attention for this loss (skip the cost when it does not)."""
    return (cfg.alpha > 0 or cfg.pseudo_weight > 0) and bool(cfg.stages)
