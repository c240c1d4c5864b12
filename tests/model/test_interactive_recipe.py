"""The fine-tune job recipe (``TrainConfig.for_interactive``) and the frozen-encoder option it uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model import load_bundle
from model.config import ModelConfig, TrainConfig
from model.losses import keep_close_loss
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


def test_keep_base_term_only_when_fine_tuning_a_trained_bundle() -> None:
    assert _recipe(from_random=False, init_bundle="b").keep_base_weight == TrainConfig.KEEP_BASE_WEIGHT > 0
    assert _recipe(from_random=False, init_bundle="b", keep_base=False).keep_base_weight == 0
    assert _recipe(from_random=True).keep_base_weight == 0  # nothing worth keeping in random weights
    assert _recipe(from_random=False, pretrained="mit.pth").keep_base_weight == 0  # ImageNet encoder: head random
    with pytest.raises(ValueError, match="init_bundle"):
        TrainConfig(keep_base_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        TrainConfig(keep_base_weight=-1.0, init_bundle="b")


def test_keep_close_loss_is_zero_at_the_base_and_ignores_labelled_cells() -> None:
    torch.manual_seed(0)
    base = torch.randn(2, 3, 8, 8)
    target = torch.full((2, 32, 32), 255)
    assert keep_close_loss(base.clone(), base, target).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = keep_close_loss(other, base, target)
    assert loss.item() > 0
    loss.backward()
    assert other.grad is not None and other.grad.abs().sum() > 0
    # a cell holding a label is left to the label: changing the logits there changes nothing
    target[0, :4, :4] = 1  # image 0, cell (0, 0) of the 8x8 grid
    moved = base.clone()
    moved[0, 0, 0, 0] += 5.0
    assert keep_close_loss(moved, base, target).item() == pytest.approx(0.0, abs=1e-6)
    assert keep_close_loss(moved, base, torch.full_like(target, 255)).item() > 0
    # every cell labelled: zero, still attached to the graph
    full = keep_close_loss(other, base, torch.ones_like(target))
    assert full.item() == 0 and full.requires_grad


def test_keep_base_fine_tune_stays_closer_to_its_base(tmp_path: Path) -> None:
    """From a trained bundle, the keep-base term keeps predictions on unlabelled pixels nearer the base's."""
    data = toy_split(4)
    base_cfg = _recipe(steps=6, from_random=True, out_dir=str(tmp_path / "base"), device="cpu", checkpoint_every=6)
    base = train(base_cfg, data, progress_bar=False).bundle
    x = torch.stack([torch.as_tensor(s.image).permute(2, 0, 1).float() / 255 for s in data.samples])

    def drift(keep: bool) -> float:
        cfg = _recipe(steps=15, from_random=False, init_bundle=str(base), lr=3e-3, encoder="train", keep_base=keep,
                      out_dir=str(tmp_path / f"ft{keep}"), device="cpu", checkpoint_every=15)
        res = train(cfg, data, progress_bar=False)
        with torch.no_grad():
            p0 = load_bundle(str(base))[0].eval()(x).softmax(1)
            p1 = load_bundle(str(tmp_path / f"ft{keep}" / "last"))[0].eval()(x).softmax(1)
        assert res.steps_done == 15
        return float((p1 - p0).abs().mean())

    assert drift(True) < drift(False)
