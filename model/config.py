"""Configuration dataclasses for the SASFormer model and its losses.

One documented object per concern, passed explicitly to every builder (the HF ``SegformerConfig``
habit): ``ModelConfig`` fixes the architecture and the input normalisation that travel with a model
bundle; ``LossConfig`` fixes the training objective. Both are plain dataclasses so they serialise to
JSON/YAML without custom code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, get_args

from .colors import default_palette

# MiT (SegFormer encoder) hyper-parameters, from the SegFormer paper (Xie et al., 2021), Table 6.
# Every variant shares heads (1, 2, 5, 8), spatial-reduction ratios (8, 4, 2, 1) and MLP ratio 4.
MIT_VARIANTS: dict[str, dict[str, tuple[int, ...]]] = {
    "b0": {"embed_dims": (32, 64, 160, 256), "depths": (2, 2, 2, 2)},
    "b1": {"embed_dims": (64, 128, 320, 512), "depths": (2, 2, 2, 2)},
    "b2": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 6, 3)},
    "b3": {"embed_dims": (64, 128, 320, 512), "depths": (3, 4, 18, 3)},
    "b4": {"embed_dims": (64, 128, 320, 512), "depths": (3, 8, 27, 3)},
    "b5": {"embed_dims": (64, 128, 320, 512), "depths": (3, 6, 40, 3)},
}
MIT_NUM_HEADS = (1, 2, 5, 8)
MIT_SR_RATIOS = (8, 4, 2, 1)
MIT_MLP_RATIO = 4.0
# SegFormer's decoder width: 256 for the light B0/B1, 768 for B2-B5.
SEGFORMER_DECODER_DIM = {"b0": 256, "b1": 256, "b2": 768, "b3": 768, "b4": 768, "b5": 768}

STRIDES_SEGFORMER = (4, 2, 2, 2)  # standard SegFormer: stage 4 at 1/32
STRIDES_SASFORMER = (4, 2, 2, 1)  # public SASFormer code: stage 4 stays at 1/16

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

IGNORE_INDEX = 255


def _known_fields(cls: type, d: dict[str, Any], what: str) -> dict[str, Any]:
    """``d`` if every key is a field of the dataclass ``cls``; a typo in a config is an error, not ignored."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return d


@dataclass
class ModelConfig:
    """Architecture of a SASFormer (MiT encoder + all-MLP decoder) and what its inputs must look like.

    Attributes:
        variant: MiT size, ``b0`` ... ``b5``.
        num_classes: number of output classes C (the ignore label 255 is not a class).
        class_names: one name per class; defaults to ``class_0`` ... .
        class_colors: one RGB triple per class for overlays and palette PNGs.
        strides: per-stage downsampling; ``(4, 2, 2, 1)`` (SASFormer's public code, stage 4 at 1/16)
            or SegFormer's ``(4, 2, 2, 2)``. Only the last may differ: it is the stage-4 patch-embed stride.
        decoder_dim: width of the all-MLP head; ``None`` takes SegFormer's value for the variant.
        drop_path_rate: stochastic depth of the encoder (0.1 in SegFormer and HF).
        decoder_dropout: dropout before the classifier (0.1 in SegFormer).
        layer_norm_eps: eps of the block and stage LayerNorms. NVlabs/mmseg MiT (and timm) use 1e-6;
            HF's Segformer runs every LayerNorm at 1e-5, so weights from that layout need 1e-5 to
            reproduce its outputs. A property of where the weights came from, so it is saved with them.
        hf_layer_norm: if True, every LayerNorm (patch embeddings and spatial reduction included) uses
            ``layer_norm_eps``, as HF's modules do.
        in_chans: channels the network sees; grayscale inputs are repeated to this.
        mean, std: input normalisation, on a 0-1 scale (ImageNet's by default).
    """

    variant: str = "b0"
    num_classes: int = 2
    class_names: list[str] = field(default_factory=list)
    class_colors: list[tuple[int, int, int]] = field(default_factory=list)
    strides: tuple[int, int, int, int] = STRIDES_SASFORMER
    decoder_dim: int | None = None
    drop_path_rate: float = 0.1
    decoder_dropout: float = 0.1
    layer_norm_eps: float = 1e-6
    hf_layer_norm: bool = False
    in_chans: int = 3
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        self.variant = self.variant.lower().removeprefix("mit_").removeprefix("mit-")
        if self.variant not in MIT_VARIANTS:
            raise ValueError(f"unknown MiT variant {self.variant!r}; expected one of {sorted(MIT_VARIANTS)}")
        if self.num_classes < 1 or self.num_classes > 254:
            raise ValueError(f"num_classes must be in 1..254 (255 is the ignore label), got {self.num_classes}")
        self.strides = tuple(int(s) for s in self.strides)  # type: ignore[assignment]
        if self.strides not in (STRIDES_SEGFORMER, STRIDES_SASFORMER):
            raise ValueError(f"strides must be {STRIDES_SEGFORMER} or {STRIDES_SASFORMER}, got {self.strides}")
        if not self.class_names:
            self.class_names = [f"class_{i}" for i in range(self.num_classes)]
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names given for num_classes={self.num_classes}")
        if not self.class_colors:
            self.class_colors = default_palette(self.num_classes)
        self.class_colors = [tuple(int(v) for v in c) for c in self.class_colors]  # type: ignore[misc]
        if len(self.class_colors) != self.num_classes:
            raise ValueError(f"{len(self.class_colors)} class colours given for num_classes={self.num_classes}")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        if self.decoder_dim is None:
            self.decoder_dim = SEGFORMER_DECODER_DIM[self.variant]

    @property
    def embed_dims(self) -> tuple[int, ...]:
        return MIT_VARIANTS[self.variant]["embed_dims"]

    @property
    def depths(self) -> tuple[int, ...]:
        return MIT_VARIANTS[self.variant]["depths"]

    @property
    def output_stride(self) -> int:
        """Total downsampling of the last stage (16 or 32)."""
        out = 1
        for s in self.strides:
            out *= s
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["strides"] = list(self.strides)
        d["class_colors"] = [list(c) for c in self.class_colors]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        return cls(**_known_fields(cls, d, "ModelConfig fields"))


Distance = Literal["l1", "l2", "kl", "ce"]
Normalisation = Literal["double", "single", "logit"]
PUShares = Literal["unlabeled", "labeled"]


@dataclass
class LossConfig:
    """The SASFormer objective ``L = pCE + alpha * L_aff`` (paper Eq. 1) and its options.

    Attributes:
        alpha: weight of the affinity loss. The paper uses 1.2 for scribbles and 0.2 for points; those
            values were tuned with the public code's double softmax (``normalisation="double"``).
        stages: which encoder stages (1-4) contribute. Default: stage 2 alone. The paper's best uses
            all four (VOC, ImageNet-pretrained MiT-B4); on MSCMR's real scribbles with MiT-B0 from
            scratch every single stage of 1-3 beat all four, and stage 2 over three seeds gave 0.857 +-
            0.003 mean volume Dice vs 0.848 +- 0.002 for all four and 0.837 +- 0.007 for pCE alone
            (docs/RESULTS.md, experiments 4-5). With all four, the mean over stages gives each stage a
            quarter of alpha, and stage 4 (the only class-consistent one) adds nothing measurable.
        distance: ``l1`` (paper, default), ``l2`` (squared Euclidean), ``kl`` = KL(Y*||P*) or
            ``ce`` = -sum Y* log P*, each summed over classes.
        normalisation: how Y and P are turned into distributions over classes before the distance.
            ``double`` (public code, default): P = softmax(logits); Y = A @ P'; then softmax again on
            both, as Eq. 5-6 written over probabilities. This squashes the loss about 4x; the paper's
            alphas were tuned for it and the probe on MSCMR found it best (0.821 vs 0.810 for pCE).
            ``single``: P = softmax(logits), Y = A @ P' compared directly (Y already sums to 1).
            ``logit``: Eq. 5-6 over resized logits: Y* = softmax(A @ logits'), P* = softmax(logits).
        unlabeled_only: compute L_aff only on query cells that contain no labeled pixel.
        exclude_self: at stages without spatial reduction (stage 4: keys = queries) drop each query's
            own key cell and renormalise, so attention collapsing onto itself cannot zero the loss.
        alpha_warmup_steps: ramp alpha linearly from 0 over this many steps (0 = constant alpha), since
            early predictions are noise and propagating them only slows learning.
        detach_attention: stop gradients into the attention (the paper does not; kept as an option).
        ignore_index: label value of unlabeled pixels.
        pseudo_weight: weight of the propagated pseudo-label term (0 = off, the default, so every
            result in docs/RESULTS.md reproduces). It uses the affinity as the paper's Eq. 4 also
            allows: ``Y_l = A_l @ P'_l`` (stop-gradient) becomes a hard target, ``argmax Y``, for the
            unlabeled pixels where ``max Y > pseudo_threshold``; CE on the decoder's 1/4-resolution
            logits, averaged over those pixels and the affinity ``stages``. Unlike L_aff, which only
            asks P to agree with its neighbours' mean, this commits confident propagated labels,
            the self-training the scribble methods that lead on unseen MSCMR subjects rely on.
        pseudo_threshold: confidence gate on the propagated distribution (0-1).
        pseudo_warmup_steps: ramp pseudo_weight linearly from 0 over this many steps (early
            predictions are noise; 0 = constant).
        pu_weight: weight of ShapePU's negative-label term (``model.pu``; 0 = off, the default): the
            class shares of the unlabeled cells are estimated by EM from the network's posteriors, and
            for each class the unlabeled cells beyond its share (lowest probability first) are told
            "not this class". A size constraint against the foreground over-prediction that scribbles
            teach. Needs no attention, so it also applies to pCE-only runs.
        pu_start_step: the term is off before this step (ShapePU switches it on after its first
            100 of 4000 epochs: the shares are only meaningful once the posteriors are).
        pu_skip: classes never given a negative label (ShapePU: class 0, the background).
        pu_shares: which cells the EM reads. ``unlabeled`` (the paper's text, the default): the
            posteriors of the cells with no labeled pixel. It feeds on its own output: on MSCMR the
            foreground share fell from ~0.1 to 0.0005 within 50 steps of the term's onset, every
            unlabeled cell told "not foreground" (docs/RESULTS.md section 6). ``labeled`` (the
            public code): the posteriors of the labeled cells, which pCE holds near the labeled class
            frequencies, so the shares stay near those and the constraint cannot collapse.
    """

    alpha: float = 1.2
    stages: tuple[int, ...] = (2,)
    distance: Distance = "l1"
    normalisation: Normalisation = "double"
    unlabeled_only: bool = True
    exclude_self: bool = False
    alpha_warmup_steps: int = 0
    detach_attention: bool = False
    ignore_index: int = IGNORE_INDEX
    pseudo_weight: float = 0.0
    pseudo_threshold: float = 0.9
    pseudo_warmup_steps: int = 0
    pu_weight: float = 0.0
    pu_start_step: int = 0
    pu_skip: tuple[int, ...] = (0,)
    pu_shares: PUShares = "unlabeled"

    def __post_init__(self) -> None:
        if self.pu_weight < 0 or self.pu_start_step < 0:
            raise ValueError(f"pu_weight and pu_start_step must be >= 0, got {self.pu_weight}, {self.pu_start_step}")
        self.pu_skip = tuple(sorted({int(k) for k in self.pu_skip}))
        if self.pu_shares not in get_args(PUShares):
            raise ValueError(f"pu_shares must be one of {get_args(PUShares)}, got {self.pu_shares!r}")
        if self.pseudo_weight < 0 or not 0.0 <= self.pseudo_threshold <= 1.0:
            raise ValueError(f"pseudo_weight must be >= 0 and pseudo_threshold in 0-1, got "
                             f"{self.pseudo_weight}, {self.pseudo_threshold}")
        self.stages = tuple(sorted({int(s) for s in self.stages}))
        if not set(self.stages) <= {1, 2, 3, 4}:
            raise ValueError(f"affinity stages must be a subset of 1-4, got {self.stages}")
        if self.distance not in ("l1", "l2", "kl", "ce"):
            raise ValueError(f"distance must be one of l1, l2, kl, ce; got {self.distance!r}")
        if self.normalisation not in ("double", "single", "logit"):
            raise ValueError(f"normalisation must be double, single or logit; got {self.normalisation!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")

    @classmethod
    def for_annotation(cls, kind: Literal["scribbles", "points"], **overrides: Any) -> LossConfig:
        """The paper's alpha for the kind of sparse label (1.2 scribbles, 0.2 points)."""
        alpha = {"scribbles": 1.2, "points": 0.2}[kind]
        return cls(**{"alpha": alpha, **overrides})

    def pseudo_weight_at(self, step: int) -> float:
        if self.pseudo_warmup_steps <= 0:
            return self.pseudo_weight
        return self.pseudo_weight * min(1.0, (step + 1) / self.pseudo_warmup_steps)

    def pu_weight_at(self, step: int) -> float:
        return self.pu_weight if step >= self.pu_start_step else 0.0

    def alpha_at(self, step: int) -> float:
        if self.alpha_warmup_steps <= 0:
            return self.alpha
        return self.alpha * min(1.0, (step + 1) / self.alpha_warmup_steps)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stages"] = list(self.stages)
        d["pu_skip"] = list(self.pu_skip)
        return d


@dataclass
class DataConfig:
    """Where training and validation samples come from, and how sparse labels are made.

    ``train``/``val`` are dataset specs (``mscmr:<root>``, ``camvid:<root>``, ``folder:<root>`` or a
    folder path; see ``model.data.load_dataset``). ``simulate`` turns dense training masks into
    scribbles or points (CamVid has no human sparse labels); ``target="dense"`` trains with full
    supervision instead (the upper bound row of the experiments).
    """

    train: str = ""
    val: str | None = None
    train_split: str | None = "train"
    val_split: str | None = "val"
    target: Literal["sparse", "dense"] = "sparse"
    simulate: Literal["scribbles", "points"] | None = None
    simulate_seed: int = 0
    simulate_params: dict[str, Any] = field(default_factory=dict)
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    # Subject-level cross-validation (model.data.folds): with ``fold`` set, training uses the train
    # split minus that fold's groups and validation is the held-out fold (on its sparse labels when it
    # has no dense masks); ``val`` is then not used during training. Both None: no CV.
    folds: str | None = None
    fold: int | None = None


@dataclass
class TrainConfig:
    """Everything a training run needs besides data; saved with every checkpoint and bundle.

    Two optimiser recipes: ``sgd`` is the paper's (momentum 0.9, wd 1e-4, poly LR, no warm-up);
    ``adamw`` is SegFormer's (wd 0.01, linear warm-up then poly/linear decay), which trains MiT from
    scratch far better in our probe. The head runs at ``head_lr_mult`` x the base LR in both.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    init_bundle: str | None = None  # fine-tune from this bundle's weights (classes must match)
    pretrained: str | None = None  # or start the encoder from a local MiT/SegFormer checkpoint
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 6e-4
    weight_decay: float = 0.01
    momentum: float = 0.9
    head_lr_mult: float = 10.0
    freeze_encoder: bool = False  # train the decode head only (few labels on a trained encoder: no drift)
    # weight of KL(starting model || model) on unlabeled pixels (model.losses.keep_close_loss); 0 = off.
    # Fine-tunes from a trained base use it so that unlabeled images keep the base's masks (no drift)
    keep_base_weight: float = 0.0
    warmup_steps: int = 100
    lr_power: float = 1.0  # poly decay exponent (1.0 = linear, the paper's code uses 0.9)
    grad_clip: float | None = 1.0
    steps: int = 900
    batch_size: int = 8
    grad_accum: int = 1
    crop_size: int = 224
    scale_range: tuple[float, float] = (0.5, 2.0)
    brightness: float = 10.0
    contrast: float = 0.0
    hflip: float = 0.5
    # in-plane rotation of each training sample by up to this many degrees, with probability rotate_prob
    # (model.data.transforms); 0 = off, the default
    rotate_deg: float = 0.0
    rotate_prob: float = 0.5
    # CutMix of images and their scribbles within a batch (model.data.mix); 0 = off, the default
    cutmix_prob: float = 0.0
    # Mean teacher (model.teacher) for the pseudo-label term: its targets come from an exponential moving
    # average of the weights with this decay instead of from the student itself; 0 = off, the default
    ema_teacher_decay: float = 0.0
    num_workers: int = 0
    amp: bool = True  # used on CUDA only
    seed: int = 0
    val_every: int = 150
    val_metric: Literal["miou", "mean_dice", "volume_dice", "pixel_accuracy"] = "miou"
    val_exclude_background: bool = False
    val_flip: bool = False
    log_every: int = 10
    ckpt_every: int = 150
    time_budget_s: float | None = None
    out_dir: str = "runs/default"
    device: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if isinstance(self.data, dict):
            self.data = DataConfig(**self.data)
        self.scale_range = tuple(float(v) for v in self.scale_range)  # type: ignore[assignment]
        for name in ("steps", "batch_size", "grad_accum", "crop_size", "val_every", "log_every", "ckpt_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}")
        if self.keep_base_weight < 0:
            raise ValueError(f"keep_base_weight must be >= 0, got {self.keep_base_weight}")
        if self.keep_base_weight > 0 and not self.init_bundle:
            raise ValueError("keep_base_weight keeps a fine-tune close to a trained model: set init_bundle")
        if not (0.0 <= self.rotate_deg <= 180.0 and 0.0 <= self.rotate_prob <= 1.0):
            raise ValueError(f"rotate_deg must be in [0, 180] and rotate_prob in [0, 1], "
                             f"got {self.rotate_deg} and {self.rotate_prob}")
        if not 0.0 <= self.ema_teacher_decay < 1.0:
            raise ValueError(f"ema_teacher_decay must be in [0, 1), got {self.ema_teacher_decay}")
        if self.ema_teacher_decay > 0 and not (self.loss.pseudo_weight > 0 and self.loss.stages):
            raise ValueError("ema_teacher_decay makes the pseudo-labels: set loss.pseudo_weight > 0 and loss.stages")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["loss"] = self.loss.to_dict()
        d["scale_range"] = list(self.scale_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Self:  # Self: PretrainConfig (model.simmim) extends it
        return cls(**_known_fields(cls, d, "training config keys"))

    # ---- the interactive (fine-tune job) recipe -------------------------------------------------
    LR_SCRATCH: ClassVar[float] = 6e-4  # AdamW base LR from random weights (SegFormer's recipe)
    LR_FINETUNE: ClassVar[float] = 6e-5  # from a trained or pretrained model: 10x lower, keeps what it knows
    FREEZE_BELOW_IMAGES: ClassVar[int] = 5  # encoder="auto" freezes a trained encoder below this many images
    KEEP_BASE_WEIGHT: ClassVar[float] = 1.0  # KL to the trained base on unlabeled pixels (see keep_base_weight)

    @classmethod
    def for_interactive(cls, model: ModelConfig, *, steps: int, batch_size: int, crop_size: int, seed: int,
                        annotation: Literal["scribbles", "points"] = "scribbles", alpha: float | None = None,
                        lr: float | None = None, from_random: bool = True, init_bundle: str | None = None,
                        pretrained: str | None = None, time_budget_s: float | None = None,
                        checkpoint_every: int = 50, out_dir: str = "runs/interactive",
                        device: str | None = None, labelled_images: int | None = None,
                        base_used_affinity: bool = True,
                        encoder: Literal["auto", "train", "freeze"] = "auto", keep_base: bool = True) -> TrainConfig:
        """The recipe of a fine-tune job on a project's few labelled images (minutes on a CPU).

        Why these values: warm-up is a tenth of the run (at most 100 steps) so short jobs still reach
        their LR; validation four times per run (at most every 150 steps) on the held-out labelled
        pixels, so promotion has a score without validating every few steps; every step is logged
        because a job's progress is what the user watches; the LR defaults to ``LR_SCRATCH`` from
        random weights and ``LR_FINETUNE`` otherwise; alpha follows the paper per annotation kind.

        Keeping a trained base close (no drift on the images nobody labelled): with ``encoder="auto"``
        the encoder is frozen when training starts from a trained model and fewer than
        ``FREEZE_BELOW_IMAGES`` images are labelled (a handful of images cannot teach an encoder much,
        but can pull it away from what it learnt); and the affinity weight is ramped in over the
        first quarter of the run when the base was trained without it (its attention has not been
        shaped by L_aff yet, and a full-weight term on untrained predictions is noise). From a trained
        bundle, ``keep_base`` adds KL to that bundle's predictions on every unlabeled pixel
        (``KEEP_BASE_WEIGHT``): the labels correct the scribbled pixels, and the images nobody labelled
        keep the base's masks instead of drifting towards the few labelled ones.
        """
        loss = LossConfig.for_annotation(annotation, **({"alpha": alpha} if alpha is not None else {}))
        if not base_used_affinity:
            loss.alpha_warmup_steps = max(1, steps // 4)
        freeze = encoder == "freeze" or (
            encoder == "auto" and not from_random and labelled_images is not None
            and labelled_images < cls.FREEZE_BELOW_IMAGES)
        return cls(
            model=model, loss=loss, init_bundle=init_bundle, pretrained=pretrained,
            lr=lr if lr is not None else (cls.LR_SCRATCH if from_random else cls.LR_FINETUNE),
            warmup_steps=max(1, min(100, steps // 10)), steps=steps, batch_size=batch_size, crop_size=crop_size,
            seed=seed, val_every=max(1, min(150, steps // 4)), log_every=1, ckpt_every=min(checkpoint_every, steps),
            time_budget_s=time_budget_s, out_dir=out_dir, device=device, num_workers=0, val_metric="miou",
            freeze_encoder=freeze,
            keep_base_weight=cls.KEEP_BASE_WEIGHT if keep_base and not from_random and init_bundle else 0.0,
        )
