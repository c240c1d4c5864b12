"""The fine-tune job recipe (``TrainConfig.for_interactive``) and the frozen-encoder option it uses."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from model.config import ModelConfig, TrainConfig
from model.train import build_model, train

from .toy import toy_split


def _recipe(**kw: object) -> TrainConfig:
    args: dict[str, object] = {"steps": 40, "batch_size": 2, "crop_size": 64, "seed": 0}
    args.update(kw)
    return TrainConfig.for_interactive(ModelConfig(num_classes=3), **args)  # type: ignore[arg-type]


def test_defaults_follow_the_start_point() -> None:
    scratch, tuned = _recipe(from_random=True), _recipe(from_random=False)
    assert scratch.lr == TrainConfig.LR_SCRATCH and tuned.lr == TrainConfig.LR_FINETUNE
    assert scratch.warmup_steps == 4 and scratch.val_every == 10 and scratch.log_every == 1
    assert _recipe(lr=1e-3).lr == 1e-3
    assert _recipe(annotation="points").loss.alpha < _recipe(annotation="scribbles").loss.alpha
    assert _recipe(alpha=0.5).loss.alpha == 0.5


def test_a_trained_encoder_is_frozen_only_for_few_labelled_images() -> None:
    few, many = TrainConfig.FREEZE_BELOW_IMAGES - 1, TrainConfig.FREEZE_BELOW_IMAGES
    assert _recipe(from_random=False, labelled_images=few).freeze_encoder
    assert not _recipe(from_random=False, labelled_images=many).freeze_encoder
    assert not _recipe(from_random=True, labelled_images=1).freeze_encoder  # a random encoder must learn
    assert not _recipe(from_random=False, labelled_images=1, encoder="train").freeze_encoder
    assert _recipe(from_random=True, labelled_images=50, encoder="freeze").freeze_encoder


def test_affinity_is_ramped_in_when_the_base_never_used_it() -> None:
    assert _recipe(base_used_affinity=True).loss.alpha_warmup_steps == 0
    ramped = _recipe(base_used_affinity=False).loss
    assert ramped.alpha_warmup_steps == 10 and ramped.alpha_at(0) < ramped.alpha_at(9) == ramped.alpha


def test_frozen_encoder_keeps_its_weights_and_the_head_learns(tmp_path: Path) -> None:
    data = toy_split(4)
    cfg = _recipe(steps=4, from_random=True, encoder="freeze", out_dir=str(tmp_path / "run"), device="cpu",
                  checkpoint_every=4)
    torch.manual_seed(cfg.seed)  # train() seeds the same way before it builds the model
    start = build_model(cfg, data)[0].state_dict()
    train(cfg, data, progress_bar=False)
    after = load_file(str(tmp_path / "run" / "last" / "model.safetensors"))
    enc = [k for k in after if k.startswith("encoder.")]
    head = [k for k in after if k.startswith("decode_head.") and after[k].is_floating_point()]
    assert enc and head
    assert all(torch.equal(after[k], start[k]) for k in enc)
    assert sum(not torch.allclose(after[k], start[k]) for k in head) >= len(head) // 2
