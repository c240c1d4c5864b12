"""SimMIM pretraining: the mask, the loss, a short run that learns, exact resume, and loading its encoder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from model.config import ModelConfig, TrainConfig
from model.pretrained import describe, load_pretrained
from model.sasformer import build_sasformer
from model.simmim import (
    ENCODER_FILE,
    PretrainConfig,
    SimMIM,
    pretrain,
    random_mask,
    simmim_loss,
    upsample_mask,
)
from model.train import build_model
from tests.model.toy import toy_split


def test_random_mask_masks_exactly_the_ratio_per_sample_and_is_seeded():
    m = random_mask(5, (7, 7), 0.6, torch.Generator().manual_seed(0))
    assert m.shape == (5, 7, 7) and m.dtype == torch.bool
    assert m.view(5, -1).sum(1).tolist() == [round(0.6 * 49)] * 5
    assert not torch.equal(m[0], m[1])  # every sample its own patches
    assert torch.equal(m, random_mask(5, (7, 7), 0.6, torch.Generator().manual_seed(0)))
    up = upsample_mask(m, 4)
    assert up.shape == (5, 28, 28) and torch.equal(up[:, ::4, ::4], m) and torch.equal(up[:, 3::4, 3::4], m)


def test_loss_counts_masked_pixels_only():
    image = torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[:, :4] = True
    rec = torch.zeros(2, 3, 8, 8)
    rec[:, :, 4:] = 5.0  # wrong only where the input was visible: costs nothing
    assert simmim_loss(rec, image, mask).item() == 0.0
    rec[:, :, :4] = 1.0
    assert simmim_loss(rec, image, mask).item() == pytest.approx(1.0)


def test_mask_token_replaces_the_masked_patches_before_the_encoder():
    torch.manual_seed(0)
    net = SimMIM(ModelConfig(variant="b0"), mask_patch=16).eval()
    x = torch.randn(1, 3, 64, 64)
    none = torch.zeros(1, 4, 4, dtype=torch.bool)
    some = none.clone()
    some[0, 0, 0] = True
    assert net(x, none).shape == (1, 3, 64, 64)
    # with a patch masked, what the input holds there no longer matters
    x2 = x.clone()
    x2[..., :12, :12] = 9.0  # inside the masked 16x16 patch, away from the 7x7 embedding's reach of its border
    assert torch.allclose(net(x, some), net(x2, some), atol=1e-5)
    assert not torch.allclose(net(x, none), net(x2, none), atol=1e-3)


def _cfg(tmp_path: Path, **kw) -> PretrainConfig:
    base = dict(model={"variant": "b0"}, steps=30, batch_size=4, crop_size=64, mask_patch=16, lr=1e-3,
                warmup_steps=5, log_every=5, ckpt_every=10, scale_range=(1.0, 1.0), out_dir=str(tmp_path / "run"))
    base.update(kw)
    return PretrainConfig.from_dict(base)


def test_config_checks_the_mask_against_the_crop():
    with pytest.raises(ValueError, match="mask_patch"):
        PretrainConfig(crop_size=64, mask_patch=10)
    with pytest.raises(ValueError, match="multiple of mask_patch"):
        PretrainConfig(crop_size=80, mask_patch=32)
    with pytest.raises(ValueError, match="mask_ratio"):
        PretrainConfig(mask_ratio=1.0)


def test_pretraining_learns_and_its_encoder_starts_a_segmentation_run(tmp_path):
    torch.set_num_threads(1)
    data = toy_split(8)
    result = pretrain(_cfg(tmp_path), train_data=data, progress_bar=False)
    assert result.status == "completed" and result.steps_done == 30
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["event"] == "train"]
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0]
    info = describe(result.encoder_file)
    assert info.layout == "sasformer" and info.num_classes is None  # encoder only: no head to take
    model = build_sasformer(ModelConfig(variant="b0", num_classes=3))
    report = load_pretrained(model, result.encoder_file)  # the encoder must match completely
    assert report.loaded and all(k.startswith("encoder.") for k in report.loaded)
    assert all(k.startswith("decode_head.") for k in report.missing)
    # and through a training config, as `sasformer train --set pretrained=...` uses it
    seg, _ = build_model(TrainConfig(model={"variant": "b0"}, pretrained=str(result.encoder_file)), data)
    key = "encoder.backbone.stages.3.blocks.1.attn.q.weight"
    assert torch.equal(seg.state_dict()[key], report_tensor(result.encoder_file, key))


def report_tensor(path: Path, key: str) -> torch.Tensor:
    from safetensors.torch import load_file

    return load_file(str(path))[key]


def test_resume_continues_exactly(tmp_path):
    torch.set_num_threads(1)
    data = toy_split(6)
    data = data.with_samples([replace(s, sparse=None) if i % 2 else s for i, s in enumerate(data)])  # unlabeled too
    straight = pretrain(_cfg(tmp_path / "a", steps=20), train_data=data, progress_bar=False)
    first = pretrain(_cfg(tmp_path / "b", steps=20, time_budget_s=0.0), train_data=data, progress_bar=False)
    assert first.status == "time_budget" and first.steps_done == 1
    resumed = pretrain(_cfg(tmp_path / "b", steps=20), train_data=data, resume=True, progress_bar=False)
    assert resumed.steps_done == 20
    a, b = report_tensor(straight.encoder_file, "encoder.backbone.patch_embed.proj.weight"), \
        report_tensor(resumed.encoder_file, "encoder.backbone.patch_embed.proj.weight")
    assert torch.equal(a, b)
    assert (tmp_path / "b" / "run" / ENCODER_FILE).is_file()
