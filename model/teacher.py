"""Mean teacher: an exponential moving average of the student's weights that makes the pseudo-labels.

Why: with ``loss.pseudo_weight`` the propagated labels ``Y = A P`` of the *student itself* became targets
for 93-98% of the unlabeled pixels within 200 steps (docs/RESULTS.md section 6), so the network confirmed
its own mistakes. The scribble methods that lead on MSCMR take such targets from another model: a second
branch (DMSPS) or a temporal average (Mean Teacher, Tarvainen & Valpola 2017). The average changes slowly
and averages out the student's step-to-step noise, so its confident labels are less self-confirming.

The decay follows Mean Teacher's ramp ``min(decay, 1 - 1/step)`` (step = optimiser steps taken, 1 after
the first, so the first update copies the student): early on the teacher tracks the student closely (a
random teacher's labels would be noise), later it averages over ~``1/(1 - decay)`` steps.
"""

from __future__ import annotations

import copy

import torch


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy in eval mode that takes no gradient: the mean teacher's start, and the fixed base of
    ``keep_base_weight``. Eval mode, because no dropout / drop-path: its outputs are targets, the model's best
    guess."""
    return copy.deepcopy(model).eval().requires_grad_(False)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float, step: int) -> float:
    """``teacher <- d * teacher + (1 - d) * student`` for parameters (buffers are copied); returns ``d``.

    ``step``: optimiser steps taken so far (1 after the first), for the ramp.
    """
    d = min(float(decay), 1.0 - 1.0 / max(1, step))
    for pt, ps in zip(teacher.parameters(), student.parameters(), strict=True):
        pt.mul_(d).add_(ps.detach(), alpha=1.0 - d)
    for bt, bs in zip(teacher.buffers(), student.buffers(), strict=True):
        bt.copy_(bs)
    return d


__all__ = ["ema_update", "frozen_copy"]
