"""Live mode: a dense mask within seconds of each save, from a light head on frozen features.

A new project's model is random and a fine-tune takes minutes on a CPU, so the first useful masks
come from a per-project pixel classifier refitted on every save: the ilastik filter bank (which carries
it at random init) plus the active model's frozen encoder features (which carry it once the encoder has
learned), with the attention propagation ``Y = A P`` (paper Eq. 4) as an optional refinement. No web,
queue or database imports; ``LiveSegmenter`` is the facade the service calls.
"""

from .features import (
    ILASTIK_SIGMAS,
    LIVE_SIGMAS,
    EncoderFeatures,
    FeatureCache,
    array_key,
    filter_bank,
    filter_bank_names,
    filter_bank_width,
)
from .head import HeadConfig, LiveHead, attention_refine, balanced_indices, balanced_quota, entropy
from .rowstore import RowStore
from .segmenter import FittedState, LiveConfig, LiveNotReady, LivePrediction, LiveSegmenter, RefitStats

__all__ = [
    "ILASTIK_SIGMAS",
    "LIVE_SIGMAS",
    "EncoderFeatures",
    "FeatureCache",
    "FittedState",
    "HeadConfig",
    "LiveConfig",
    "LiveHead",
    "LiveNotReady",
    "LivePrediction",
    "LiveSegmenter",
    "RefitStats",
    "RowStore",
    "array_key",
    "attention_refine",
    "balanced_indices",
    "balanced_quota",
    "entropy",
    "filter_bank",
    "filter_bank_names",
    "filter_bank_width",
]
