"""``Predictor``: the NumPy-facing way every other layer runs a SASFormer.

image (PIL or array, any size, gray/RGB/16-bit) -> class map and per-class probabilities at the
image's own size, with the model's normalisation, optional flip / multi-scale test-time
augmentation, and attention maps for a query pixel (the paper's Fig. 3) plus the propagated-label
map Y_l. No HTTP, no storage: the backend and CLI wrap this.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .losses import propagate
from .preprocess import ImageLike, normalize, pad_to_multiple, to_rgb_array
from .sasformer import SASFormer


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class Prediction:
    """``class_map`` (H, W) uint8 class ids; ``probs`` (C, H, W) float32 softmax probabilities."""

    class_map: np.ndarray
    probs: np.ndarray

    def class_areas(self) -> np.ndarray:
        """Pixel count per class."""
        return np.bincount(self.class_map.ravel(), minlength=self.probs.shape[0])

    def entropy(self) -> np.ndarray:
        """Per-pixel entropy (nats): where a next scribble would help most."""
        p = np.clip(self.probs, 1e-8, 1.0)
        return -(p * np.log(p)).sum(0)


@dataclass(frozen=True)
class EncoderOutput:
    """The encoder's view of one image (``Predictor.encoder_features``), for heads trained on frozen features.

    ``stages``: four ``(C_i, h_i, w_i)`` float32 CPU tensors over the padded network input;
    ``attention``: ``{stage: (h_q, w_q, h_k, w_k)}`` mean attention of the requested stages (1-based);
    ``logits``: the decoder's ``(C, h_1, w_1)`` logits of the same forward (on request, else ``None``);
    ``padded_hw``/``valid_hw``: the padded input size and the part of it that is the image (after any
    ``max_side`` downscale); ``image_hw``: the image's own size.
    """

    stages: tuple[torch.Tensor, ...]
    attention: dict[int, torch.Tensor]
    padded_hw: tuple[int, int]
    valid_hw: tuple[int, int]
    image_hw: tuple[int, int]
    logits: torch.Tensor | None = None


class Predictor:
    """Runs one model on images of any size; safe to share between threads.

    Forwards are serialised by a lock: attention capture switches module state for the duration of
    a forward, so a ``predict`` and an ``attention_maps`` must not interleave on one model.

    Args:
        model: a built ``SASFormer`` (its ``cfg`` gives normalisation and classes).
        device: ``None`` picks CUDA when present, else CPU.
        max_side: images whose longer side exceeds this are downscaled for the network and the
            result upsampled back (keeps memory bounded for large photos); ``None`` = never.
    """

    def __init__(self, model: SASFormer, device: str | torch.device | None = None,
                 max_side: int | None = 2048) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self.model = model.to(self.device).eval()
        self.cfg = model.cfg
        self.max_side = max_side
        self.pad_multiple = 32
        # the one inference lock of the service: attention capture switches module state during a forward,
        # and on a CPU parallel forwards only fight over cores
        self._lock = threading.Lock()

    # ---- preprocessing -------------------------------------------------------------------------
    def _prepare(self, rgb: np.ndarray, scale: float = 1.0, flip: bool = False
                 ) -> tuple[torch.Tensor, tuple[int, int]]:
        """Normalised, padded ``(1, 3, H', W')`` input and the size it represents before padding.

        Flipping happens before padding, so the flipped view is padded on the same side as the
        original and un-flipping its output lines up pixel for pixel.
        """
        x = normalize(rgb, self.cfg.mean, self.cfg.std).unsqueeze(0).to(self.device)
        h, w = rgb.shape[:2]
        s = scale
        if self.max_side is not None and max(h, w) * s > self.max_side:
            s = self.max_side / max(h, w)
        if s != 1.0:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if flip:
            x = x.flip(-1)
        x, hw = pad_to_multiple(x, self.pad_multiple)
        return x, hw

    @staticmethod
    def _unpad_resize(logits: torch.Tensor, padded_hw: tuple[int, int], valid_hw: tuple[int, int],
                      out_hw: tuple[int, int]) -> torch.Tensor:
        """1/4-res logits of a padded input -> logits at the original image size."""
        x = F.interpolate(logits, size=padded_hw, mode="bilinear", align_corners=False)
        x = x[..., : valid_hw[0], : valid_hw[1]]
        if valid_hw != out_hw:
            x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False)
        return x

    # ---- prediction ----------------------------------------------------------------------------
    @torch.inference_mode()
    def logits(self, image: ImageLike, flip: bool = False, scales: Sequence[float] = (1.0,)) -> torch.Tensor:
        """Mean logits ``(C, H, W)`` at the image size over the requested TTA views."""
        rgb = to_rgb_array(image)
        h, w = rgb.shape[:2]
        total = None
        n = 0
        for s in scales:
            for flipped in (False, True) if flip else (False,):
                x, valid = self._prepare(rgb, s, flip=flipped)
                with self._lock:
                    logits = self.model(x)
                out = self._unpad_resize(logits, (x.shape[-2], x.shape[-1]), valid, (h, w))
                if flipped:
                    out = out.flip(-1)
                # average probabilities, not logits, so views with different confidence mix fairly
                p = out.float().softmax(1)
                total = p if total is None else total + p
                n += 1
        assert total is not None
        return (total / n).log()[0]

    def predict(self, image: ImageLike, flip: bool = False, scales: Sequence[float] = (1.0,)) -> Prediction:
        logp = self.logits(image, flip=flip, scales=scales)
        probs = logp.exp()
        class_map = probs.argmax(0).to(torch.uint8)
        return Prediction(class_map.cpu().numpy(), probs.cpu().numpy().astype(np.float32))

    # ---- frozen features (opt-in; the live head of model.live) -------------------------------------
    @torch.inference_mode()
    def encoder_features(self, image: ImageLike, attention_stages: Sequence[int] = (),
                         with_logits: bool = False) -> EncoderOutput:
        """The four MiT stage maps of one forward (no TTA), on CPU, and optionally stage attention.

        Maps stay at their native 1/4..1/16 resolution over the padded input (a few MB for 512x512);
        callers sample or project them and bring the result to pixels (``model.live.features``).
        ``attention_stages`` (1-4) also returns those stages' mean attention ``A_l`` as
        ``(h_q, w_q, h_k, w_k)``, from the same forward (the explicit-softmax path, slower than fused).
        ``with_logits`` also runs the decoder on those features (the model's own opinion, 1/4 resolution).
        """
        rgb = to_rgb_array(image)
        h, w = rgb.shape[:2]
        x, valid = self._prepare(rgb)
        wanted = sorted({int(s) for s in attention_stages})
        if any(s not in (1, 2, 3, 4) for s in wanted):
            raise ValueError(f"attention stages must be 1-4, got {list(attention_stages)}")
        maps: list[torch.Tensor] = []
        with self._lock:
            if wanted:
                with self.model.encoder.capture_attention() as capture:
                    feats = self.model.encoder(x)
                maps = capture.stage_means()
            else:
                feats = self.model.encoder(x)
            logits = self.model.decode_head(feats)[0].float().cpu() if with_logits else None
        att: dict[int, torch.Tensor] = {}
        for s in wanted:
            hq, wq = feats[s - 1].shape[-2:]
            hk, wk = self.model.encoder.key_grid(s - 1, (hq, wq))
            att[s] = maps[s - 1][0].reshape(hq, wq, hk, wk).float().cpu()
        return EncoderOutput(tuple(f[0].float().cpu() for f in feats), att, (int(x.shape[-2]), int(x.shape[-1])),
                             (int(valid[0]), int(valid[1])), (h, w), logits)

    # ---- attention -----------------------------------------------------------------------------
    @torch.inference_mode()
    def _attention(self, rgb: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor], tuple[int, int],
                                                   tuple[int, int]]:
        x, valid = self._prepare(rgb)
        with self._lock:
            logits, maps = self.model(x, return_attention=True)
        return logits, maps, tuple(x.shape[-2:]), valid  # type: ignore[return-value]

    def attention_maps(self, image: ImageLike, point: tuple[int, int]) -> dict[str, np.ndarray]:
        """Heatmaps ``(H, W)`` of where the patch containing ``point`` = (x, y) attends, per stage.

        Keys ``"1"``..``"4"`` and ``"mean"``. Each stage's map is its attention row (over the key
        grid) upsampled to the image and scaled to sum to 1 over the image, so stages with coarse
        and fine key grids are comparable; ``"mean"`` averages the four.
        """
        rgb = to_rgb_array(image)
        h, w = rgb.shape[:2]
        px, py = point
        if not (0 <= px < w and 0 <= py < h):
            raise ValueError(f"query point {(px, py)} is outside the image of size {w}x{h}")
        _, maps, padded, valid = self._attention(rgb)
        # query position in padded-input coordinates (resizing by max_side scales it too)
        sy, sx = valid[0] / h, valid[1] / w
        qy, qx = (py + 0.5) * sy, (px + 0.5) * sx
        out: dict[str, np.ndarray] = {}
        for i, a in enumerate(maps):
            _, hq, wq, hk, wk = a.shape
            r = min(int(qy * hq / padded[0]), hq - 1)
            c = min(int(qx * wq / padded[1]), wq - 1)
            row = a[0, r, c][None, None]  # (1, 1, hk, wk)
            heat = self._unpad_resize(row, padded, valid, (h, w))[0, 0].clamp_min(0)
            heat = heat / heat.sum().clamp_min(1e-12)
            out[str(i + 1)] = heat.float().cpu().numpy()
        out["mean"] = np.mean([out[str(i)] for i in range(1, 5)], axis=0)
        return out

    def attention_map(self, image: ImageLike, point: tuple[int, int], stage: int | str = "mean") -> np.ndarray:
        """One heatmap (see ``attention_maps``); ``stage`` is 1-4 or ``"mean"``."""
        key = str(stage)
        if key not in ("1", "2", "3", "4", "mean"):
            raise ValueError(f"stage must be 1, 2, 3, 4 or 'mean', got {stage!r}")
        return self.attention_maps(image, point)[key]

    def propagated_labels(self, image: ImageLike, stage: int | str = "mean",
                          normalisation: str = "single") -> Prediction:
        """Y_l = A_l @ P'_l (paper Eq. 4) brought to image size: the labels attention would carry.

        Compared with ``predict`` it shows where the encoder's attention agrees with the decoder.
        """
        rgb = to_rgb_array(image)
        h, w = rgb.shape[:2]
        logits, maps, padded, valid = self._attention(rgb)
        stages = range(1, 5) if str(stage) == "mean" else [int(stage)]
        total = None
        for s in stages:
            a = maps[s - 1]
            y, _ = propagate(a, logits, normalisation)
            _, hq, wq, _, _ = a.shape
            y = y.transpose(1, 2).reshape(1, -1, hq, wq)
            y = self._unpad_resize(y, padded, valid, (h, w))
            total = y if total is None else total + y
        assert total is not None
        probs = (total / len(stages))[0]
        probs = probs / probs.sum(0, keepdim=True).clamp_min(1e-12)
        return Prediction(probs.argmax(0).to(torch.uint8).cpu().numpy(), probs.float().cpu().numpy())
