"""ShapePU's size constraint for scribbles: estimated class shares of the unlabeled pixels, negative labels.

Why: scribbles over-represent the small structures (a stroke per structure, whatever its area), so a
network trained on scribbles alone believes the foreground is more common than it is and paints
false-positive islands away from the heart (MSCMR: 23.7% of the scribbled training pixels are RV/Myo/LV,
9.8% of the val subjects' dense pixels). Those
islands are what largest-component post-processing removes on val (docs/RESULTS.md section 6) and what
the scribble score cannot see. ShapePU (Zhang & Zhuang, MICCAI 2022) treats each class as a
positive-unlabeled problem:

1. **Class shares of the unlabeled pixels by EM** (Saerens, Latinne & Decaestecker, 2002): the network's
   posteriors were learnt under the labeled pixels' class frequencies ``pi_l``; the shares ``pi`` that
   best explain its posteriors on the unlabeled pixels are the fixed point of
   ``w_ic = (pi_c / pi_l_c) p_ic / sum_k (pi_k / pi_l_k) p_ik``, ``pi_c = mean_i w_ic``.
2. **Negative labels ("marginal probability maximisation")**: for each constrained class ``c``, the
   ``1 - pi_c`` share of unlabeled pixels with the lowest ``p_c`` are told "not c", and each such pixel
   maximises the probability mass of the classes it may still be: ``-log sum_{k allowed} p_ik``. At
   most a ``pi_c`` share of the unlabeled pixels can then keep class ``c``: a size constraint that
   adapts to each batch, with no shape or size prior given by hand.

Departures, both recorded in docs/architecture.md: by default the shares are estimated on the *unlabeled*
cells, as the paper says; the public code passes the labeled pixels' predictions to its EM, available as
``shares_from="labeled"`` after the paper's reading collapsed on MSCMR (its own negatives drive the
unlabeled posteriors, hence the next estimate, towards background); and the term works
on the decoder's 1/4-resolution logits with "unlabeled" meaning a cell with no labeled pixel, as the
affinity loss does. ShapePU's second part, cutout shape consistency, needs a second forward pass per
step and is not implemented. Classes with no labeled pixel in the batch are neither estimated nor
constrained (their ``pi_l`` is 0). Everything here is without gradient except the final log-mass.
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn.functional as F

from model.config import PUShares


def em_class_shares(probs: torch.Tensor, prior: torch.Tensor, tol: float = 1e-3,
                    max_iter: int = 100) -> torch.Tensor:
    """``(C,)`` class shares of the samples ``probs (N, C)`` (posteriors learnt under ``prior (C,)``).

    Saerens et al.'s EM for a shifted class prior; stops when the shares move by less than ``tol``
    (summed over classes, ShapePU's criterion) or after ``max_iter`` rounds. ``prior`` must be > 0.
    """
    if probs.ndim != 2 or prior.shape != probs.shape[1:]:
        raise ValueError(f"probs must be (N, C) and prior (C,), got {tuple(probs.shape)} and {tuple(prior.shape)}")
    shares = prior.clone()
    for _ in range(max_iter):
        w = probs * (shares / prior)
        w = w / w.sum(1, keepdim=True).clamp_min(1e-12)
        new = w.mean(0)
        moved = float((new - shares).abs().sum())
        shares = new
        if moved < tol:
            break
    return shares


def negative_label_loss(logits: torch.Tensor, target: torch.Tensor, unlabeled: torch.Tensor,
                        skip: tuple[int, ...] = (0,), ignore_index: int = 255,
                        shares_from: PUShares = "unlabeled") -> tuple[torch.Tensor, dict[str, float]]:
    """ShapePU's PU term on ``logits (B, C, h, w)`` for scribble ``target (B, H, W)``; ``unlabeled``
    ``(B, h*w)`` marks the cells with no labeled pixel (``model.losses.unlabeled_cells``).

    ``shares_from`` (``LossConfig.pu_shares``): the EM reads the posteriors of the ``unlabeled`` cells
    (the paper) or of the ``labeled`` ones (the public code); the negatives always go to unlabeled cells.

    Returns the loss (0, attached, when no cell gets a negative label) and logged scalars: ``pu_frac``,
    the share of unlabeled cells with at least one negative label, and ``pu_fg``, the estimated share of
    the constrained classes among unlabeled cells.
    """
    if shares_from not in get_args(PUShares):
        raise ValueError(f"shares_from must be one of {get_args(PUShares)}, got {shares_from!r}")
    c = logits.shape[1]
    zero = logits.sum() * 0.0
    labeled = target[target != ignore_index]
    unl = unlabeled.reshape(-1)  # (B*h*w,)
    if labeled.numel() == 0 or not bool(unl.any()):
        return zero, {"pu_frac": 0.0, "pu_fg": 0.0}
    flat = logits.permute(0, 2, 3, 1).reshape(-1, c)  # (B*h*w, C), cells in unlabeled_cells' order
    with torch.no_grad():
        counts = torch.bincount(labeled.flatten(), minlength=c)[:c].float()
        present = counts > 0
        probs = F.softmax(flat.float(), dim=1)
        read = unl if shares_from == "unlabeled" else ~unl
        if not bool(read.any()):  # no labeled cell at this resolution (a lone labeled pixel always makes one)
            read = unl
        probs_r = probs[read][:, present]
        probs_r = probs_r / probs_r.sum(1, keepdim=True).clamp_min(1e-12)
        shares = torch.zeros(c, device=logits.device)
        shares[present] = em_class_shares(probs_r, (counts / counts.sum())[present])
        negative = torch.zeros_like(probs, dtype=torch.bool)
        n_u = int(unl.sum())
        constrained = [k for k in range(c) if bool(present[k]) and k not in skip]
        for k in constrained:
            kth = max(int(n_u * (1.0 - float(shares[k]))), 1)
            threshold = probs[unl, k].kthvalue(kth).values
            negative[:, k] = unl & (probs[:, k] < threshold)
        negative[negative.all(1)] = False  # a cell must keep some class (only possible with skip=())
        rows = negative.any(1)
    stats = {"pu_frac": float(rows.sum()) / n_u, "pu_fg": float(shares[constrained].sum()) if constrained else 0.0}
    if not bool(rows.any()):
        return zero, stats
    sel = flat[rows].float()
    allowed = sel.masked_fill(negative[rows], float("-inf"))
    loss = (torch.logsumexp(sel, 1) - torch.logsumexp(allowed, 1)).mean()
    return loss, stats
