import pytest
import torch

from model import LossConfig, ModelConfig, build_sasformer, sasformer_loss
from model.config import MIT_VARIANTS, STRIDES_SEGFORMER
from model.sasformer import encoder_param_count

# SegFormer paper, Table 6: encoder parameters in millions.
PAPER_ENCODER_PARAMS = {"b0": 3.4, "b1": 13.1, "b2": 24.2, "b3": 44.0, "b4": 60.8, "b5": 81.4}


@pytest.mark.parametrize("variant", sorted(MIT_VARIANTS))
def test_variant_shapes_and_param_count(variant: str) -> None:
    model = build_sasformer(variant=variant, num_classes=5).eval()
    n = encoder_param_count(model) / 1e6
    assert abs(n - PAPER_ENCODER_PARAMS[variant]) / PAPER_ENCODER_PARAMS[variant] < 0.05, n
    with torch.no_grad():
        feats = model.encoder(torch.randn(1, 3, 64, 96))
        logits = model(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(model.cfg.embed_dims)
    assert [tuple(f.shape[-2:]) for f in feats] == [(16, 24), (8, 12), (4, 6), (4, 6)]
    assert logits.shape == (1, 5, 16, 24)


def test_segformer_strides_put_stage4_at_one_32nd() -> None:
    model = build_sasformer(variant="b0", num_classes=2, strides=STRIDES_SEGFORMER).eval()
    with torch.no_grad():
        feats = model.encoder(torch.randn(2, 3, 128, 64))
    assert tuple(feats[3].shape[-2:]) == (4, 2)
    assert model.cfg.output_stride == 32


def test_attention_maps_shapes_rows_and_no_cost_when_off() -> None:
    model = build_sasformer(variant="b0", num_classes=3).eval()
    x = torch.randn(2, 3, 128, 96)
    fused_before = {id(b): b.attn.fused_attn for st in model.encoder.backbone.stages for b in st.blocks}
    with torch.no_grad():
        plain = model(x)
        logits, maps = model(x, return_attention=True)
    assert torch.allclose(plain, logits, atol=1e-5)
    # stage l: queries at 1/4, 1/8, 1/16, 1/16; keys reduced by sr (8, 4, 2, 1)
    assert [tuple(a.shape) for a in maps] == [
        (2, 32, 24, 4, 3), (2, 16, 12, 4, 3), (2, 8, 6, 4, 3), (2, 8, 6, 8, 6)
    ]
    for a in maps:
        rows = a.flatten(3).sum(-1)
        assert torch.allclose(rows, torch.ones_like(rows), atol=1e-5)
        assert (a >= 0).all()
    # capture is opt-in: afterwards every block is back on its fused kernel and no hook remains
    for stage in model.encoder.backbone.stages:
        for blk in stage.blocks:
            assert blk.attn.fused_attn == fused_before[id(blk)]
            assert len(blk.attn.attn_drop._forward_hooks) == 0


def test_attention_is_mean_over_heads_and_blocks() -> None:
    model = build_sasformer(variant="b0", num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    seen: list[list[torch.Tensor]] = [[] for _ in range(4)]
    handles = []
    for i, stage in enumerate(model.encoder.backbone.stages):
        for blk in stage.blocks:
            handles.append(blk.attn.attn_drop.register_forward_hook(
                lambda m, inp, out, i=i: seen[i].append(inp[0].detach().clone())))
    with torch.no_grad():
        _, maps = model(x, return_attention=True)
    for h in handles:
        h.remove()
    for i, a in enumerate(maps):
        expected = torch.stack([t.mean(1) for t in seen[i]]).mean(0)
        assert torch.allclose(a.flatten(1, 2).flatten(2), expected, atol=1e-6)


def test_affinity_gradients_reach_attention_unless_detached() -> None:
    model = build_sasformer(variant="b0", num_classes=3, drop_path_rate=0.0).train()
    x = torch.randn(1, 3, 64, 64)
    target = torch.full((1, 64, 64), 255)  # no labels: the loss is the affinity term alone
    cfg = LossConfig(alpha=1.0, stages=(1, 2, 3, 4))
    logits, maps = model(x, return_attention=True)
    assert all(a.requires_grad and a.grad_fn is not None for a in maps)
    out = sasformer_loss(logits, maps, target, cfg)
    grads = torch.autograd.grad(out.loss, maps, retain_graph=True)
    assert all(g.abs().sum() > 0 for g in grads)
    out.loss.backward()
    q = model.encoder.backbone.stages[0].blocks[0].attn.q.weight
    assert q.grad is not None and q.grad.abs().sum() > 0

    logits, maps = model(x, return_attention=True, detach_attention=True)
    assert all(not a.requires_grad for a in maps)
    # the loss still trains the predictions
    assert sasformer_loss(logits, maps, target, cfg).loss.requires_grad


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="unknown MiT variant 'b9'"):
        ModelConfig(variant="b9")
    with pytest.raises(ValueError, match="strides"):
        ModelConfig(strides=(4, 2, 1, 1))
    with pytest.raises(ValueError, match="2 class names"):
        ModelConfig(num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="subset of 1-4"):
        LossConfig(stages=(0, 5))


def test_queries_and_keys_reproduce_the_attention_maps() -> None:
    model = build_sasformer(variant="b0", num_classes=3).eval()
    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        logits_maps, maps = model(x, return_attention=True)
        logits_qk, qks = model(x, return_qk=True)
    assert torch.allclose(logits_maps, logits_qk, atol=1e-5)
    for stage, (a, qk) in enumerate(zip(maps, qks, strict=True)):
        assert qk.q.shape[0] == model.cfg.depths[stage] and qk.k.shape[:3] == qk.q.shape[:3]
        assert tuple(a.shape[1:3]) == qk.query_hw and tuple(a.shape[3:]) == qk.key_hw
        scale = qk.q.shape[-1] ** -0.5
        rebuilt = ((qk.q * scale) @ qk.k.transpose(-2, -1)).softmax(-1).mean(dim=(0, 2))
        assert torch.allclose(rebuilt, a.flatten(1, 2).flatten(2), atol=1e-5)
    # recording is opt-in and switched off afterwards
    assert all(blk.attn.qk_sink is None for st in model.encoder.backbone.stages for blk in st.blocks)


def test_qk_path_detach_cuts_the_attention_gradient() -> None:
    model = build_sasformer(variant="b0", num_classes=3, drop_path_rate=0.0).train()
    x = torch.randn(1, 3, 64, 64)
    _, qks = model(x, return_qk=True)
    assert all(qk.q.requires_grad and qk.k.requires_grad for qk in qks)
    _, qks = model(x, return_qk=True, detach_attention=True)
    assert not any(qk.q.requires_grad or qk.k.requires_grad for qk in qks)
