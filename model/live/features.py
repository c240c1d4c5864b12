"""Per-pixel features for the live head: a classic filter bank and the frozen encoder's stage maps.

Why two kinds. At a project's start the model is random, so its encoder features carry little; the
ilastik filter bank (smoothing, edges, blobs, ridges and texture at six scales) is what makes a pixel
classifier useful from the first scribble. As the encoder learns (a warm seed, fine-tunes), its
features carry context the filter bank cannot see (RV vs LV blood pool have the same intensity), and
the head picks them up without being retrained end to end.

* ``filter_bank``: ilastik's default feature set -- Gaussian smoothing, gradient magnitude, Laplacian of
  Gaussian, difference of Gaussians, structure-tensor and Hessian-of-Gaussian eigenvalues -- at
  ilastik's sigmas 0.7, 1, 1.6, 3.5, 5, 10 plus 16, 24, 32 for context (``LIVE_SIGMAS``), computed with
  separable ``scipy.ndimage`` passes that share the 1-D smoothing between derivatives.
* ``EncoderFeatures``: the four MiT stage maps from one forward of the model (``Predictor.encoder_features``),
  kept at their native 1/4-1/16 resolution (a few MB), plus the stage attention for the ``Y = A P``
  refinement. They are brought to pixel resolution only where needed: sampled at labelled pixels for
  fitting, or after a linear reduction (the head's first layer, or a fixed projection) for a whole image,
  because a linear map commutes with bilinear upsampling and 512 channels at 512x512 would be 0.5 GB.
* ``FeatureCache``: an LRU keyed by ``(image key, model version key)`` with a byte cap, so a save and
  the segment that follows it featurise the image once.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

ILASTIK_SIGMAS: tuple[float, ...] = (0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
"""ilastik's default scales above its intensity-only 0.3."""

LIVE_SIGMAS: tuple[float, ...] = (*ILASTIK_SIGMAS, 16.0, 24.0, 32.0)
"""The live head's default: ilastik's scales plus three context scales. Why: with simulated scribbles on
MSCMR val (bench/interactive.py sessions, filter bank alone), the head's mean Dice went 0.315 -> 0.396 ->
0.402 per image and 0.111 -> 0.167 -> 0.203 per project with sigmas 16+24 and then 32 added, and CamVid
0.61 -> 0.69 per image: a per-pixel classifier needs a view of the surroundings (the forest peer's
features reach sigma 16)."""

DOG_RATIO = 0.66
"""Difference of Gaussians as ilastik/vigra define it: G(sigma) - G(0.66 sigma)."""

PER_SIGMA = ("gauss", "gradmag", "log", "dog", "st_ev1", "st_ev2", "hess_ev1", "hess_ev2")


# ---- filter bank -------------------------------------------------------------------------------------
def as_float_channels(image: np.ndarray) -> tuple[np.ndarray, bool]:
    """``(H, W, K)`` float32 channels in [0, 1] and whether the image is gray.

    A colour image whose three channels are equal (gray data fed as RGB, like MSCMR) is treated as one
    channel: featurising it three times would only triple the cost and the width.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim == 2:
        gray = True
        chans = arr[..., None]
    elif arr.ndim == 3 and arr.shape[2] == 3:
        gray = bool(np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]))
        chans = arr[..., :1] if gray else arr
    else:
        raise ValueError(f"expected a gray (H, W) or colour (H, W, 3|4) image, got shape {arr.shape}")
    out = chans.astype(np.float32)
    if arr.dtype == np.uint8:
        out /= 255.0
    elif arr.dtype.kind in "iuf" and out.size:
        lo, hi = float(out.min()), float(out.max())
        out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
    return out, gray


def _bank_one_channel(img: np.ndarray, sigmas: Sequence[float], out: np.ndarray, start: int) -> int:
    """Write the raw intensity and the eight per-sigma features of one ``(H, W)`` channel into ``out``.

    Separable passes are shared: the column-smoothed image at order 0/1/2 feeds G, Gx, Gxx / Gy, Gxy /
    Gyy, so the six derivatives of a scale cost 9 one-dimensional filters instead of 12.
    """
    k = start
    out[..., k] = img
    k += 1
    g1d = ndimage.gaussian_filter1d
    for s in sigmas:
        c0 = g1d(img, s, axis=0, order=0, mode="reflect")
        c1 = g1d(img, s, axis=0, order=1, mode="reflect")
        c2 = g1d(img, s, axis=0, order=2, mode="reflect")
        g = g1d(c0, s, axis=1, order=0, mode="reflect")
        gx = g1d(c0, s, axis=1, order=1, mode="reflect")
        gxx = g1d(c0, s, axis=1, order=2, mode="reflect")
        gy = g1d(c1, s, axis=1, order=0, mode="reflect")
        gxy = g1d(c1, s, axis=1, order=1, mode="reflect")
        gyy = g1d(c2, s, axis=1, order=0, mode="reflect")
        small = ndimage.gaussian_filter(img, DOG_RATIO * s, mode="reflect")
        # structure tensor: gradient at the inner scale s, products smoothed at the outer scale s/2 (vigra)
        outer = 0.5 * s
        jxx = ndimage.gaussian_filter(gx * gx, outer, mode="reflect")
        jyy = ndimage.gaussian_filter(gy * gy, outer, mode="reflect")
        jxy = ndimage.gaussian_filter(gx * gy, outer, mode="reflect")
        out[..., k] = g
        out[..., k + 1] = np.sqrt(gx * gx + gy * gy)
        out[..., k + 2] = gxx + gyy
        out[..., k + 3] = g - small
        out[..., k + 4], out[..., k + 5] = _sym2_eigs(jxx, jxy, jyy)
        out[..., k + 6], out[..., k + 7] = _sym2_eigs(gxx, gxy, gyy)
        k += len(PER_SIGMA)
    return k


def _sym2_eigs(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the symmetric 2x2 fields ``[[a, b], [b, c]]``."""
    half_tr = 0.5 * (a + c)
    rad = np.sqrt((0.5 * (a - c)) ** 2 + b * b)
    return half_tr + rad, half_tr - rad


def filter_bank_width(gray: bool, sigmas: Sequence[float] = LIVE_SIGMAS) -> int:
    """Feature count of ``filter_bank``: the full bank on luminance, plus smoothed colour for RGB."""
    full = 1 + len(PER_SIGMA) * len(sigmas)
    return full if gray else full + 3 * (1 + len(sigmas))


def filter_bank(image: np.ndarray, sigmas: Sequence[float] = LIVE_SIGMAS) -> np.ndarray:
    """``(H, W, F)`` float32 ilastik-style features of a gray or RGB image.

    Gray: raw intensity + 8 features per sigma (49 at ilastik's 6 sigmas, 73 at ``LIVE_SIGMAS``). RGB: the
    full bank on luminance (where edges, blobs and texture live) plus each colour channel raw and
    Gaussian-smoothed at every sigma (colour separates sky from road at equal brightness): 49 + 21 = 70 at
    ilastik's sigmas, 73 + 30 = 103 at ``LIVE_SIGMAS``, instead of ilastik's 3 x 49, which would triple the
    cost and memory for little gain over luminance texture.
    """
    chans, gray = as_float_channels(image)
    h, w = chans.shape[:2]
    out = np.empty((h, w, filter_bank_width(gray, sigmas)), dtype=np.float32)
    lum = chans[..., 0] if gray else chans @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    k = _bank_one_channel(np.ascontiguousarray(lum), sigmas, out, 0)
    if not gray:
        for ch in range(3):
            c = np.ascontiguousarray(chans[..., ch])
            out[..., k] = c
            k += 1
            for s in sigmas:
                out[..., k] = ndimage.gaussian_filter(c, s, mode="reflect")
                k += 1
    assert k == out.shape[-1]
    return out


def filter_bank_names(gray: bool, sigmas: Sequence[float] = LIVE_SIGMAS) -> list[str]:
    """Column names of ``filter_bank`` (for feature importances and debugging)."""
    names = ["raw"] + [f"{f}_s{s:g}" for s in sigmas for f in PER_SIGMA]
    if not gray:
        for c in "rgb":
            names += [f"{c}_raw"] + [f"{c}_gauss_s{s:g}" for s in sigmas]
    return names


# ---- encoder features ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncoderFeatures:
    """One forward's stage maps of one image, at native resolution, and how they map onto its pixels.

    ``stages``: ``(C_i, h_i, w_i)`` float32 tensors over the *padded* network input; ``attention``:
    ``{stage (1-based): (h_q, w_q, h_k, w_k)}`` for the stages requested (may be empty); ``padded_hw`` the padded input
    size and ``valid_hw`` the part of it that is the image (after any ``max_side`` downscale);
    ``image_hw`` the image size. Pixel (y, x) sits at ``((y + .5) * valid_h / H, (x + .5) * valid_w / W)``
    in padded-input coordinates, exactly where ``Predictor`` puts it when it resizes logits back.
    """

    stages: tuple[torch.Tensor, ...]
    attention: dict[int, torch.Tensor]
    padded_hw: tuple[int, int]
    valid_hw: tuple[int, int]
    image_hw: tuple[int, int]

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(s.shape[0]) for s in self.stages)

    def nbytes(self) -> int:
        n = sum(s.numel() * s.element_size() for s in self.stages)
        n += sum(a.numel() * a.element_size() for a in self.attention.values())
        return int(n)

    @classmethod
    def of(cls, predictor: Any, image: np.ndarray, attention_stages: Sequence[int] = (),
           with_logits: bool = False) -> EncoderFeatures:
        """Run ``predictor.encoder_features`` (a ``model.Predictor``) on one image.

        ``with_logits`` appends the decoder's logits as a fifth "stage" (index 4, width C, 1/4 grid): the
        model's own class scores, which the head can take as features like any stage map.
        """
        out = predictor.encoder_features(image, attention_stages=attention_stages, with_logits=with_logits)
        stages = tuple(out.stages) + ((out.logits,) if with_logits and out.logits is not None else ())
        return cls(stages, dict(out.attention), out.padded_hw, out.valid_hw, out.image_hw)

    def grid(self, ys: np.ndarray, xs: np.ndarray) -> torch.Tensor:
        """``(1, 1, N, 2)`` grid_sample coordinates of pixel centres (ys, xs) on the padded input."""
        (ph, pw), (vh, vw), (h, w) = self.padded_hw, self.valid_hw, self.image_hw
        py = (torch.as_tensor(ys, dtype=torch.float32) + 0.5) * (vh / h)
        px = (torch.as_tensor(xs, dtype=torch.float32) + 0.5) * (vw / w)
        g = torch.stack([2.0 * px / pw - 1.0, 2.0 * py / ph - 1.0], dim=-1)
        return g.view(1, 1, -1, 2)

    def sample(self, ys: np.ndarray, xs: np.ndarray, stages: Sequence[int] | None = None) -> np.ndarray:
        """``(N, sum C_i)`` float32 stage features bilinearly sampled at pixels (ys, xs).

        Identical to upsampling every map (through the 1/4 grid, see ``_to_finest``) to the image and
        indexing it (``align_corners=False`` on the padded grid), without ever building the full-size maps.
        """
        idx = range(len(self.stages)) if stages is None else stages
        grid = self.grid(ys, xs)
        cols = [F.grid_sample(self._to_finest(self.stages[i][None].float()), grid, mode="bilinear",
                              align_corners=False, padding_mode="border")[0, :, 0].T for i in idx]
        return torch.cat(cols, dim=1).numpy() if cols else np.zeros((len(ys), 0), np.float32)

    def project_dense(self, weights: Sequence[torch.Tensor], stages: Sequence[int] | None = None) -> torch.Tensor:
        """``sum_i upsample(W_i @ f_i)``: ``(K, H, W)`` -- a linear map of the stage features at every pixel.

        ``weights[j]`` is ``(K, C_i)`` for the j-th used stage. The projection runs on the native grid and
        only K channels are upsampled, which is how a 512-channel, 512x512 input stays cheap.
        """
        idx = list(range(len(self.stages)) if stages is None else stages)
        h, w = self.image_hw
        fast = self.valid_hw == self.image_hw
        grid = None
        if not fast:
            ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            grid = self.grid(ys.ravel(), xs.ravel())
        acc: torch.Tensor | None = None
        for wt, i in zip(weights, idx, strict=True):
            low = self._to_finest(torch.einsum("kc,chw->khw", wt.float(), self.stages[i].float())[None])
            acc = low if acc is None else acc + low
        assert acc is not None
        if fast:
            # same values as grid_sample at the pixel centres (align_corners=False, edges clamped): upsample to
            # the padded input and crop the image out of it
            return F.interpolate(acc, size=self.padded_hw, mode="bilinear", align_corners=False)[0, :, :h, :w]
        assert grid is not None
        up = F.grid_sample(acc, grid, mode="bilinear", align_corners=False, padding_mode="border")
        return up[0, :, 0].view(-1, h, w)

    def _to_finest(self, x: torch.Tensor) -> torch.Tensor:
        """``(1, K, h_i, w_i)`` -> the finest stage grid (stage 1, 1/4 of the padded input).

        Why: upsampling K channels to full resolution is the bulk of a dense prediction; summing every
        stage's projection on the 1/4 grid first leaves one full-size upsample instead of five. ``sample``
        goes through the same grid, so fitting rows and dense predictions stay exactly the same function.
        """
        fine = tuple(int(v) for v in self.stages[0].shape[-2:])
        if tuple(x.shape[-2:]) == fine:
            return x
        return F.interpolate(x, size=fine, mode="bilinear", align_corners=False)


# ---- cache -------------------------------------------------------------------------------------------
def array_key(image: np.ndarray) -> str:
    """A content key for an image passed without one (same pixels -> same cache entry)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(arr.tobytes(), digest_size=16)
    h.update(str((arr.shape, arr.dtype.str)).encode())
    return "sha:" + h.hexdigest()


def nbytes_of(value: Any) -> int:
    """Bytes held by a cached value (arrays, tensors, ``EncoderFeatures`` or tuples of them)."""
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, torch.Tensor):
        return int(value.numel() * value.element_size())
    if isinstance(value, EncoderFeatures):
        return value.nbytes()
    if isinstance(value, tuple | list):
        return sum(nbytes_of(v) for v in value)
    return 0


class FeatureCache:
    """Thread-safe LRU of feature maps keyed by ``(image key, model version key)`` under a byte cap.

    The filter bank does not depend on the model, so it is stored under version key ``""``; encoder
    maps under the version that produced them, so a promotion never serves stale features. An entry
    larger than the whole cap is computed and returned but not kept. ``get_or_compute`` computes
    outside the lock (a slow featurisation must not block reads of other images); two threads missing
    the same key may both compute it, and the second result simply replaces the first.
    """

    def __init__(self, max_bytes: int = 768 * 2**20) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: tuple[str, str]) -> bool:
        with self._lock:
            return key in self._items

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, key: tuple[str, str]) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple[str, str], value: Any) -> None:
        size = nbytes_of(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, s) = self._items.popitem(last=False)
                self._bytes -= s

    def get_or_compute(self, key: tuple[str, str], compute: Callable[[], Any]) -> Any:
        value = self.get(key)
        if value is None:
            value = compute()
            self.put(key, value)
        return value

    def drop_image(self, image_key: str) -> None:
        """Forget every entry of one image (it was deleted or its pixels changed)."""
        with self._lock:
            for k in [k for k in self._items if k[0] == image_key]:
                self._bytes -= self._items.pop(k)[1]

    def drop_version(self, version_key: str) -> None:
        """Forget every entry of one model version (it is no longer served)."""
        with self._lock:
            for k in [k for k in self._items if k[1] == version_key]:
                self._bytes -= self._items.pop(k)[1]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
