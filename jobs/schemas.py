"""What a fine-tune job is asked to do, what it reports while it runs and what it produced.

Shared by the API (request bodies, responses) and the worker (which reads the parameters back from
the job row and writes progress and result in these shapes).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES = ("succeeded", "failed", "cancelled")


class JobCreate(BaseModel):
    """Fine-tune the project's model on its sparse labels (paper's pCE + affinity loss).

    Defaults are for interactive use on a CPU (a few hundred small steps, minutes); raise ``steps`` and
    ``crop_size`` on a GPU. ``time_budget_s`` ends the job early, as a finished one (validated, registered).
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["fine_tune"] = "fine_tune"
    base_version: int | None = Field(default=None, ge=1, le=2**31 - 1,
                                     description="model version to start from; default active")
    pretrained: str | None = Field(default=None, max_length=255,
                                   description="start instead from this checkpoint file in the server's "
                                               "pretrained_dir (encoder only; fresh head)")
    scratch: bool = Field(default=False, description="start instead from random weights")
    images: list[int] | None = Field(default=None, max_length=100_000,
                                     description="image ids to train on; default every labelled image")
    steps: int = Field(default=300, ge=1, le=200_000)
    time_budget_s: float | None = Field(default=None, gt=0, le=7 * 24 * 3600,
                                        description="stop after this many seconds of training")
    batch_size: int = Field(default=4, ge=1, le=64)
    lr: float | None = Field(default=None, gt=0, le=1,
                             description="base LR (AdamW, head x10); default 6e-4 from random weights, "
                                         "6e-5 from a trained or pretrained model")
    crop_size: int = Field(default=256, ge=64, le=2048)
    annotation: Literal["scribbles", "points"] = Field(
        default="scribbles", description="sets the affinity weight alpha as in the paper (1.2 / 0.2)")
    alpha: float | None = Field(default=None, ge=0, le=10, description="overrides the paper's alpha")
    encoder: Literal["auto", "train", "freeze"] = Field(
        default="auto", description="train or freeze the encoder; auto freezes a trained encoder when fewer than "
                                    "5 images are labelled (keeps the unlabelled images from drifting)")
    val_fraction: float = Field(default=0.2, ge=0, le=0.5,
                                description="share of the image area whose labelled pixels are held out "
                                            "(in fixed seeded blocks) to validate and to decide promotion")
    promote: Literal["never", "if_better", "always"] = "if_better"
    seed: int = Field(default=0, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_start(self) -> JobCreate:
        given = [n for n, v in (("base_version", self.base_version is not None),
                                ("pretrained", self.pretrained is not None), ("scratch", self.scratch)) if v]
        if len(given) > 1:
            raise ValueError(f"give at most one of base_version, pretrained, scratch (got {', '.join(given)})")
        return self


class JobProgress(BaseModel):
    """What the worker reports while training; every field is optional until the first step."""

    step: int | None = None
    total: int | None = None
    loss: dict[str, float] = Field(default_factory=dict,
                                   description="loss terms: 'loss' (total), 'pce' (partial CE), 'aff' (affinity), "
                                               "'keep' (KL to the trained base on unlabeled pixels, if one)")
    lr: float | None = None
    throughput: float | None = Field(default=None, description="images per second")
    eta_s: float | None = Field(default=None, description="estimated seconds left")
    metric: dict[str, float] = Field(default_factory=dict, description="latest validation metrics, e.g. {'miou':..}")
    message: str | None = None
    attempt: int | None = Field(default=None, description="1 on the first run; higher after a re-delivery")
    resumed_from: int | None = Field(default=None, description="checkpoint step this attempt resumed from")


class JobResult(BaseModel):
    """What a finished job produced and why it was (not) promoted."""

    version: int | None = None
    promoted: bool = False
    reason: str = ""
    metric: str = "miou"
    heldout_pixels: int = 0
    candidate: dict[str, Any] = Field(default_factory=dict, description="held-out metrics of the new version")
    active: dict[str, Any] = Field(default_factory=dict, description="held-out metrics of the version it was "
                                                                     "compared with")
    compared_with: int | None = Field(default=None, description="the active version at comparison time")
    status: str | None = Field(default=None, description="how training ended: completed, time_budget")
