"""Mix-based augmentation for sparse labels: paste a box of one image *and its scribbles* into another.

Why: scribble-supervised methods that lead on MSCMR (CycleMix and its successors) mix images and
their scribbles, which multiplies the label layouts a network sees from the same few strokes and
punishes predictions that depend on where a structure sits in the crop. This is the CutMix form: a
square box whose area is a uniform fraction ``area`` of the crop, at a uniform position, copied
from another sample of the same batch (a random derangement, so never from itself) into both the
image and the label map; unlabeled pixels stay unlabeled wherever they come from.

Randomness comes only from the ``generator`` passed in: the training loop seeds it with
``(seed, step, micro-batch)``, so a resumed run mixes exactly as the original.
"""

from __future__ import annotations

import math

import torch


def cutmix_batch(x: torch.Tensor, y: torch.Tensor, prob: float, generator: torch.Generator,
                 area: tuple[float, float] = (0.2, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Return new ``(images (B, C, H, W), labels (B, H, W))`` where each sample, with probability
    ``prob``, carries a box of another sample's image and labels. Batches of one are returned as is."""
    b, _, h, w = x.shape
    if prob <= 0 or b < 2:
        return x, y
    if y.shape != (b, h, w):
        raise ValueError(f"labels must be (B, H, W) = {(b, h, w)}, got {tuple(y.shape)}")
    shift = int(torch.randint(1, b, (1,), generator=generator))
    partner = (torch.arange(b) + shift) % b  # a cyclic shift: every sample gets a partner that is not itself
    apply = torch.rand(b, generator=generator) < prob
    frac = area[0] + (area[1] - area[0]) * torch.rand(b, generator=generator)
    pos = torch.rand(b, 2, generator=generator)
    x, y = x.clone(), y.clone()
    src_x, src_y = x.clone(), y.clone()
    for i in range(b):
        if not bool(apply[i]):
            continue
        side = math.sqrt(float(frac[i]))
        bh, bw = max(1, round(side * h)), max(1, round(side * w))
        y0, x0 = int(float(pos[i, 0]) * (h - bh + 1)), int(float(pos[i, 1]) * (w - bw + 1))
        j = int(partner[i])
        x[i, :, y0:y0 + bh, x0:x0 + bw] = src_x[j, :, y0:y0 + bh, x0:x0 + bw]
        y[i, y0:y0 + bh, x0:x0 + bw] = src_y[j, y0:y0 + bh, x0:x0 + bw]
    return x, y
