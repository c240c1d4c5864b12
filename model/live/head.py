"""``LiveHead``: a small per-project pixel classifier on [filter bank + frozen encoder features].

Why an MLP. The classifier was chosen by measurement (one thread, MSCMR, filter bank alone at
ilastik's sigmas, docs/PERFORMANCE.md "Live mode"). On 20 train slices with real scribbles -> 8 val
slices, on the same class-balanced 20k samples: 2x64 MLP mean Dice 0.231, 100-tree forest 0.218,
depth-12 forest 0.213, depth-16 extra trees 0.209, histogram gradient boosting 0.215. On simulated
scribbles of a single image the full-depth forest on the same bank was ahead (0.366 vs 0.315), which the
context scales of ``LIVE_SIGMAS`` closed for the MLP (0.402 vs the peer's 0.409). What decided it is
time: tree ensembles took 0.8-7 s to walk a 512x512 image's 262k pixels down their trees, the MLP ~0.1-0.3
s, and its first layer takes the encoder's 512 stage channels for free at predict time, because it is
linear: ``W @ upsample(f) = upsample(W @ f)``, so the encoder part runs on the 1/4-1/16 grids and only 64
channels are upsampled.

Why class-balanced sampling with a cap. Background scribbles outnumber the structures (MSCMR: 76% of
labelled pixels), and a project keeps growing; a bounded, balanced sample keeps every refit within a
fixed time and keeps small classes from being drowned. Each image keeps at most ``per_image_class_cap``
pixels per class (drawn once, when its labels are saved), and every refit draws ``max_samples`` over the
project by water-filling: each class gets an equal share, and what a small class cannot use goes to the
others.

Why refits continue from the last weights. After a save only a few labels change; continuing the same
network (same input layout) for ``refit_steps`` instead of ``steps`` from scratch halves the refit time
and keeps masks from jumping between saves. A change of feature layout (new model version, other class
count) starts fresh.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .features import EncoderFeatures


@dataclass(frozen=True)
class HeadConfig:
    """Size and fitting schedule of the live head.

    ``encoder_stages`` (1-based) are the MiT stages whose features enter the head (empty = filter bank
    only), reduced to ``encoder_pca`` components; ``use_logits`` adds the model's own decoder logits as
    unreduced columns. Why the logits: with a trained seed and a few simulated scribbles, the head on
    stage features alone fell below the seed model's own masks (its features are general, the decoder's
    logits are what it learned to predict). ``residual`` goes further: the head's output is
    ``a * logits + b + MLP(x)`` with the MLP's last layer starting at zero and ``a`` at the model's
    better-than-chance accuracy on the labelled pixels (``_trust``): from a good seed a fresh head starts as
    the model's own prediction and the scribbles fit a correction; from a random model it starts near 0.
    ``steps`` Adam steps of ``batch_size`` for a fresh fit, ``refit_steps`` when continuing.
    """

    hidden: int = 64
    layers: int = 2
    steps: int = 250
    refit_steps: int = 120
    batch_size: int = 2048
    lr: float = 3e-3
    weight_decay: float = 1e-4
    max_samples: int = 20_000
    per_image_class_cap: int = 4_000
    encoder_stages: tuple[int, ...] = (1, 2, 3, 4)
    encoder_pca: int = 32
    use_logits: bool = True
    residual: bool = True
    threads: int | None = 1
    seed: int = 0


_THREADS_LOCK = threading.Lock()
_THREADS_USERS = 0
_THREADS_SAVED = 0


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: leave the setting alone).

    Why: the head's ops are small (2k x 81 matmuls), and a multi-threaded pool on a busy 2-core machine
    spends its time waiting: a toy fit took 0.14 s on one thread and 6.8 s on two under load average 7.
    The setting is process-wide, so nested and concurrent users share one save/restore (the last one out
    restores); a model forward in another thread meanwhile runs on ``n`` threads too (correct, slower).
    """
    global _THREADS_USERS, _THREADS_SAVED
    if n is None:
        yield
        return
    with _THREADS_LOCK:
        if _THREADS_USERS == 0:
            _THREADS_SAVED = torch.get_num_threads()
            torch.set_num_threads(n)
        _THREADS_USERS += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_USERS -= 1
            if _THREADS_USERS == 0:
                torch.set_num_threads(_THREADS_SAVED)


def balanced_quota(counts: np.ndarray, cap: int) -> np.ndarray:
    """Per-class sample counts: equal shares of ``cap``, a small class's unused share going to the others.

    ``counts[c]`` pixels are available for class c; the result never exceeds them, sums to
    ``min(cap, counts.sum())``, and is as equal across the classes present as those two allow.
    """
    counts = np.asarray(counts, dtype=np.int64)
    quota = np.zeros_like(counts)
    remaining = int(min(cap, counts.sum()))
    order = [int(c) for c in np.argsort(counts, kind="stable") if counts[c] > 0]
    for i, c in enumerate(order):
        share = remaining // (len(order) - i)
        take = int(min(counts[c], share))
        quota[c] = take
        remaining -= take
    if remaining > 0:  # integer division leftovers: give them to the classes that still have pixels
        for c in order[::-1]:
            extra = int(min(remaining, counts[c] - quota[c]))
            quota[c] += extra
            remaining -= extra
            if remaining == 0:
                break
    return quota


def balanced_indices(labels: np.ndarray, cap: int, rng: np.random.Generator, num_classes: int) -> np.ndarray:
    """Indices of a class-balanced subsample of ``labels`` (values 0..num_classes-1) of at most ``cap``."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=num_classes)[:num_classes]
    quota = balanced_quota(counts, cap)
    parts = [rng.choice(np.flatnonzero(labels == c), int(q), replace=False) for c, q in enumerate(quota) if q > 0]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def _layout(fb_width: int, enc_widths: Sequence[int], n_raw: int, feature_key: str | None
            ) -> tuple[int, tuple[int, ...], int, str | None]:
    return fb_width, tuple(int(w) for w in enc_widths), n_raw, feature_key if enc_widths else None


@dataclass
class LiveHead:
    """Fit on labelled pixels (features as rows), predict per-class probabilities of whole images.

    A fitted head is used read-only by ``predict_proba`` (thread-safe); ``fit`` builds new state and is
    called on a copy by ``LiveSegmenter``, so a prediction never sees a half-trained network.
    """

    num_classes: int
    config: HeadConfig = field(default_factory=HeadConfig)
    net: nn.Sequential | None = None
    layout: tuple[int, tuple[int, ...], int, str | None] | None = None
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None
    enc_mean: torch.Tensor | None = None
    enc_basis: torch.Tensor | None = None
    skip: torch.Tensor | None = None
    trust: float = 0.0
    logits_off: bool = False
    classes_seen: tuple[int, ...] = ()
    fits: int = 0

    def _build(self, width: int) -> nn.Sequential:
        torch.manual_seed(self.config.seed)
        mods: list[nn.Module] = []
        d = width
        for _ in range(self.config.layers):
            mods += [nn.Linear(d, self.config.hidden), nn.ReLU()]
            d = self.config.hidden
        mods.append(nn.Linear(d, self.num_classes))
        return nn.Sequential(*mods)

    def fit(self, fb: np.ndarray, enc: np.ndarray | None, labels: np.ndarray, enc_widths: Sequence[int] = (),
            warm_start: bool = True, feature_key: str | None = None, n_raw: int = 0) -> dict[str, Any]:
        """Train on rows ``[fb | enc]`` with class ids ``labels``; returns fit statistics.

        Continues from the current network when ``warm_start`` and the feature layout -- widths and
        ``feature_key``, the model version that produced ``enc`` -- is unchanged (another encoder's
        channels mean something else, so a promotion starts fresh, PCA included); standardisation is
        recomputed from these rows every time (it moves little between saves). The last ``n_raw`` entries of
        ``enc_widths`` (e.g. the decoder logits) enter as they are; the others are reduced by PCA.
        """
        with torch_threads(self.config.threads):
            return self._fit(fb, enc, labels, enc_widths, warm_start, feature_key, n_raw)

    def _fit(self, fb: np.ndarray, enc: np.ndarray | None, labels: np.ndarray, enc_widths: Sequence[int],
             warm_start: bool, feature_key: str | None, n_raw: int) -> dict[str, Any]:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.size == 0:
            raise ValueError("no labelled pixel to fit the live head on")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be in 0..{self.num_classes - 1}, got {labels.min()}..{labels.max()}")
        if enc is not None and enc.shape[1] == 0:
            enc = None
        layout = _layout(fb.shape[1], enc_widths if enc is not None else (), n_raw if enc is not None else 0,
                         feature_key)
        if enc is not None and sum(layout[1]) != enc.shape[1]:
            raise ValueError(f"encoder widths {layout[1]} do not add up to {enc.shape[1]} columns")
        fresh = not (warm_start and self.net is not None and self.layout == layout)
        xt = torch.from_numpy(np.ascontiguousarray(fb, dtype=np.float32))
        enc_mean, enc_basis = self.enc_mean, self.enc_basis
        if enc is not None:
            et = torch.from_numpy(np.ascontiguousarray(enc, dtype=np.float32))
            pca_w = sum(layout[1][: len(layout[1]) - layout[2]])
            if fresh or enc_basis is None or enc_mean is None:
                enc_mean, enc_basis = _pca(et[:, :pca_w], self.config.encoder_pca)
            xt = torch.cat([xt, (et[:, :pca_w] - enc_mean) @ enc_basis, et[:, pca_w:]], dim=1)
        else:
            enc_mean = enc_basis = None
        mean = xt.mean(0)
        std = xt.std(0).clamp_min(1e-6)
        xt = (xt - mean) / std
        yt = torch.from_numpy(labels)
        net = self._build(xt.shape[1]) if fresh else _clone(self.net)  # type: ignore[arg-type]
        # residual on the model's logits: only when the last raw block is exactly one logit per class
        resid = None
        if (self.config.residual and enc is not None and layout[2] > 0 and layout[1][-1] == self.num_classes):
            resid = torch.from_numpy(np.ascontiguousarray(enc[:, -self.num_classes:], dtype=np.float32))
        skip = None
        params: list[torch.Tensor] = list(net.parameters())
        if resid is not None and fresh:
            self.trust = _trust(resid, yt)
        logits_off = resid is not None and self.trust < MIN_TRUST
        if logits_off:
            xt[:, -self.num_classes:] = 0.0  # standardised columns: 0 = the mean, no information
            resid = None
        if resid is not None:
            if fresh or self.skip is None:
                last = net[-1]
                assert isinstance(last, nn.Linear)
                nn.init.zeros_(last.weight)
                nn.init.zeros_(last.bias)
                skip = torch.stack([torch.full((self.num_classes,), self.trust), torch.zeros(self.num_classes)])
            else:
                skip = self.skip.clone()
            skip.requires_grad_(True)
            params.append(skip)
        steps = self.config.steps if fresh else self.config.refit_steps
        opt = torch.optim.Adam(params, lr=self.config.lr, weight_decay=self.config.weight_decay)
        gen = torch.Generator().manual_seed(self.config.seed + self.fits)
        bs = min(self.config.batch_size, len(yt))
        net.train()
        loss = torch.zeros(())
        for _ in range(steps):
            b = torch.randint(0, len(yt), (bs,), generator=gen)
            out = net(xt[b])
            if resid is not None and skip is not None:
                out = out + skip[0] * resid[b] + skip[1]
            loss = F.cross_entropy(out, yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        self.skip = skip.detach() if skip is not None else None
        self.logits_off = logits_off
        self.net, self.layout, self.mean, self.std = net, layout, mean, std
        self.enc_mean, self.enc_basis = enc_mean, enc_basis
        self.classes_seen = tuple(int(c) for c in np.unique(labels))
        self.fits += 1
        return {"samples": int(len(yt)), "steps": steps, "fresh": fresh, "loss": float(loss.detach()),
                "features": int(xt.shape[1])}

    @property
    def fitted(self) -> bool:
        return self.net is not None

    def predict_proba(self, fb: np.ndarray, enc: EncoderFeatures | None = None,
                      stages: Sequence[int] | None = None) -> np.ndarray:
        """``(C, H, W)`` float32 class probabilities of a whole image from its ``(H, W, F)`` filter bank.

        ``enc``/``stages`` (0-based stage indices) must be what the head was fitted on. The first layer is
        split: the filter-bank columns as one matrix product over pixels, the encoder columns projected
        on each stage's native grid and upsampled (``EncoderFeatures.project_dense``).
        """
        with torch_threads(self.config.threads):
            return self._predict_proba(fb, enc, stages)

    @torch.inference_mode()
    def _predict_proba(self, fb: np.ndarray, enc: EncoderFeatures | None,
                       stages: Sequence[int] | None) -> np.ndarray:
        if self.net is None or self.layout is None or self.mean is None or self.std is None:
            raise RuntimeError("fit the live head before predicting")
        fb_w, enc_w, _, _ = self.layout
        if fb.shape[-1] != fb_w:
            raise ValueError(f"head was fitted on {fb_w} filter-bank features, got {fb.shape[-1]}")
        h, w = fb.shape[:2]
        first = self.net[0]
        assert isinstance(first, nn.Linear)
        wt = first.weight / self.std  # fold standardisation into the first layer
        if self.logits_off:  # trained with those columns at 0: drop them here too
            wt = wt.clone()
            wt[:, -self.num_classes:] = 0.0
        bias = first.bias - wt @ self.mean
        fbt = torch.from_numpy(np.ascontiguousarray(fb, dtype=np.float32)).view(-1, fb_w)
        hid = torch.addmm(bias, fbt, wt[:, :fb_w].T)
        if enc_w:
            if enc is None or stages is None:
                raise ValueError("head was fitted with encoder features: pass enc and stages")
            if tuple(enc.stages[i].shape[0] for i in stages) != enc_w:
                raise ValueError(f"encoder widths {[enc.stages[i].shape[0] for i in stages]} != fitted {enc_w}")
            assert self.enc_basis is not None and self.enc_mean is not None
            # fold the PCA too: W_z ((e - mu) V) = (W_z V^T) e - W_z V^T mu, a linear map of the raw channels
            k = self.enc_basis.shape[1]
            w_pca = wt[:, fb_w: fb_w + k] @ self.enc_basis.T
            hid -= w_pca @ self.enc_mean
            w_enc = torch.cat([w_pca, wt[:, fb_w + k:]], dim=1)
            splits = np.cumsum((0, *enc_w))
            weights = [w_enc[:, splits[j]: splits[j + 1]] for j in range(len(enc_w))]
            hid += enc.project_dense(weights, stages).reshape(wt.shape[0], -1).T
        out = self.net[1:](hid)
        if self.skip is not None:
            assert enc is not None and stages is not None
            eye = torch.eye(self.num_classes)
            logits = enc.project_dense([eye], [stages[-1]]).reshape(self.num_classes, -1).T
            out = out + self.skip[0] * logits + self.skip[1]
        return out.softmax(-1).T.reshape(self.num_classes, h, w).contiguous().numpy()


MIN_TRUST = 0.25
"""Below this better-than-chance accuracy on the labelled pixels the model's logits are not used."""


def _trust(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Initial weight of the model's logits: how much better than chance the model is on the labelled pixels.

    Why: a random model's logits are confident noise; starting from them (weight 1) cost 0.17 mean Dice at
    random init on MSCMR, while a trained seed's logits are the best start there is. The scribbles say which:
    ``(accuracy - chance) / (1 - chance)`` of the model's argmax on the training rows, clipped to [0, 1], with
    the class-balanced accuracy (a random model that calls everything background must not look good
    because background dominates the scribbles; chance = 1 / classes labelled). Below ``MIN_TRUST`` the
    logits are left out altogether (their columns zeroed): as inputs too they cost 0.17 Dice at random
    init on MSCMR. Training adjusts the weight either way.
    """
    classes = torch.unique(labels)
    if classes.numel() < 2:
        return 0.0
    chance = 1.0 / classes.numel()
    pred = logits.argmax(1)
    acc = float(torch.stack([(pred[labels == c] == c).float().mean() for c in classes]).mean())  # balanced
    return float(min(1.0, max(0.0, (acc - chance) / (1.0 - chance))))


def _pca(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and the top-``k`` principal directions ``(E, k)`` of rows ``x`` (``k <= 0``: identity; E = 0: empty).

    Why: 512 encoder channels would make every training step ~10x the cost of the 49-wide filter bank;
    32 components keep what varies across the labelled pixels, and stay a linear map, so prediction
    still folds them into the first layer.
    """
    mean = x.mean(0)
    if k <= 0 or k >= x.shape[1]:
        return mean, torch.eye(x.shape[1])
    xc = x - mean
    cov = xc.T @ xc / max(1, len(x) - 1)
    _, vecs = torch.linalg.eigh(cov.double())
    return mean, vecs[:, -k:].flip(1).float().contiguous()


def _clone(net: nn.Sequential) -> nn.Sequential:
    """A deep copy to train, so the served network is never modified in place."""
    import copy

    return copy.deepcopy(net)


# ---- attention refinement (paper Eq. 4) ---------------------------------------------------------------
def attention_refine(probs: np.ndarray, enc: EncoderFeatures, stage: int = 2, weight: float = 0.5) -> np.ndarray:
    """Blend the head's probabilities with the labels attention would carry: ``(1-w) P + w up(A_l P)``.

    ``Y_l = A_l P'_l`` (paper Eq. 4): ``P`` is brought onto stage ``stage``'s key grid (area average over
    the padded input, padding counted as no mass), each query cell takes the attention-weighted mean of it,
    and ``Y`` is upsampled back to the pixels and renormalised. It pulls a pixel toward the classes of
    the places the encoder says it resembles -- context a per-pixel classifier lacks -- and is only as
    good as that attention: useful once the encoder is trained, noise-like at random init (measured in
    docs/PERFORMANCE.md). ``enc`` must hold that stage's attention (``attention_stages``).
    """
    if stage not in enc.attention:
        raise ValueError(f"no attention of stage {stage} in the encoder features (have {sorted(enc.attention)})")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1], got {weight}")
    a = enc.attention[stage]
    hq, wq, hk, wk = a.shape
    (ph, pw), (vh, vw), (h, w) = enc.padded_hw, enc.valid_hw, enc.image_hw
    p = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))[None]
    p = F.interpolate(p, size=(vh, vw), mode="bilinear", align_corners=False) if (vh, vw) != (h, w) else p
    mass = torch.ones_like(p[:, :1])
    p = F.pad(torch.cat([p, mass], 1), (0, pw - vw, 0, ph - vh))
    pk = F.adaptive_avg_pool2d(p, (hk, wk))[0].reshape(p.shape[1], -1).T  # (M', C+1)
    y = a.reshape(hq * wq, hk * wk).float() @ pk  # (M, C+1)
    y = y[:, :-1] / y[:, -1:].clamp_min(1e-6)
    y = y.T.reshape(1, -1, hq, wq)
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    y = F.grid_sample(y, enc.grid(ys.ravel(), xs.ravel()), mode="bilinear", align_corners=False,
                      padding_mode="border")[0, :, 0].reshape(-1, h, w)
    y = y.clamp_min(0)
    y = y / y.sum(0, keepdim=True).clamp_min(1e-12)
    out = (1.0 - weight) * torch.from_numpy(probs) + weight * y
    return (out / out.sum(0, keepdim=True).clamp_min(1e-12)).numpy().astype(np.float32)


def entropy(probs: np.ndarray) -> np.ndarray:
    """Per-pixel entropy (nats) of ``(C, H, W)`` probabilities, normalised to [0, 1] by log C."""
    p = np.clip(probs, 1e-8, 1.0)
    return -(p * np.log(p)).sum(0) / math.log(max(2, probs.shape[0]))
