"""SASFormer: SegFormer trained from sparse labels with an attention-based affinity loss.

The ML library of SASFormer Studio: no web, queue or database imports. Other layers use the
names re-exported here.
"""

from .bundle import Bundle, BundleError, load_bundle, read_bundle_meta, save_bundle
from .config import IGNORE_INDEX, MIT_VARIANTS, LossConfig, ModelConfig
from .losses import LossOutput, affinity_loss, partial_cross_entropy, sasformer_loss
from .predictor import Prediction, Predictor, default_device
from .pretrained import LoadReport, PretrainedError, load_pretrained
from .sasformer import SASFormer, build_sasformer

__all__ = [
    "IGNORE_INDEX",
    "MIT_VARIANTS",
    "Bundle",
    "BundleError",
    "LoadReport",
    "LossConfig",
    "LossOutput",
    "ModelConfig",
    "Prediction",
    "Predictor",
    "PretrainedError",
    "SASFormer",
    "affinity_loss",
    "build_sasformer",
    "default_device",
    "load_bundle",
    "load_pretrained",
    "partial_cross_entropy",
    "read_bundle_meta",
    "sasformer_loss",
    "save_bundle",
]
