"""Pretrained loading, tested on checkpoints the tests build themselves (nothing is downloaded)."""

import re
from pathlib import Path

import pytest
import torch
from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerModel

from model import PretrainedError, build_sasformer, load_pretrained
from model.config import STRIDES_SEGFORMER

# transformers 5.x module names -> 4.x names (the layout of most files published on model hubs)
HF5_TO_HF4 = [
    (r"stages\.(\d)\.patch_embeddings\.layer_norm", r"encoder.patch_embeddings.\1.layer_norm"),
    (r"stages\.(\d)\.patch_embeddings\.proj", r"encoder.patch_embeddings.\1.proj"),
    (r"stages\.(\d)\.blocks\.(\d+)\.layernorm_before", r"encoder.block.\1.\2.layer_norm_1"),
    (r"stages\.(\d)\.blocks\.(\d+)\.layernorm_after", r"encoder.block.\1.\2.layer_norm_2"),
    (r"stages\.(\d)\.blocks\.(\d+)\.attention\.q_proj", r"encoder.block.\1.\2.attention.self.query"),
    (r"stages\.(\d)\.blocks\.(\d+)\.attention\.k_proj", r"encoder.block.\1.\2.attention.self.key"),
    (r"stages\.(\d)\.blocks\.(\d+)\.attention\.v_proj", r"encoder.block.\1.\2.attention.self.value"),
    (r"stages\.(\d)\.blocks\.(\d+)\.attention\.o_proj", r"encoder.block.\1.\2.attention.output.dense"),
    (r"stages\.(\d)\.blocks\.(\d+)\.attention\.sequence_reduction\.sequence_reduction",
     r"encoder.block.\1.\2.attention.self.sr"),
    (r"stages\.(\d)\.blocks\.(\d+)\.attention\.sequence_reduction\.layer_norm",
     r"encoder.block.\1.\2.attention.self.layer_norm"),
    (r"stages\.(\d)\.blocks\.(\d+)\.mlp\.fc1", r"encoder.block.\1.\2.mlp.dense1"),
    (r"stages\.(\d)\.blocks\.(\d+)\.mlp\.fc2", r"encoder.block.\1.\2.mlp.dense2"),
    (r"stages\.(\d)\.blocks\.(\d+)\.mlp\.dwconv", r"encoder.block.\1.\2.mlp.dwconv"),
    (r"stages\.(\d)\.layer_norm", r"encoder.layer_norm.\1"),
    (r"decode_head\.linear_projections", "decode_head.linear_c"),
]


def _rename(sd, rules, prefix=""):
    out = {}
    for k, v in sd.items():
        for pat, rep in rules:
            k = re.sub(pat, rep, k)
        out[prefix + k] = v
    return out


def hf_to_nvlabs(sd: dict) -> dict:
    """HF 5.x SegformerModel keys -> NVlabs mit_b*.pth keys, written out independently of model/pretrained.py."""
    out = {}
    for k, v in sd.items():
        if m := re.match(r"stages\.(\d)\.patch_embeddings\.(proj|layer_norm)\.(\w+)", k):
            out[f"patch_embed{int(m[1]) + 1}.{'proj' if m[2] == 'proj' else 'norm'}.{m[3]}"] = v
        elif m := re.match(r"stages\.(\d)\.layer_norm\.(\w+)", k):
            out[f"norm{int(m[1]) + 1}.{m[2]}"] = v
        elif m := re.match(r"stages\.(\d)\.blocks\.(\d+)\.(.+)\.(\w+)$", k):
            s, j, mod, p = int(m[1]) + 1, m[2], m[3], m[4]
            if mod in ("attention.k_proj", "attention.v_proj"):
                continue
            name = {
                "layernorm_before": "norm1", "layernorm_after": "norm2", "attention.q_proj": "attn.q",
                "attention.o_proj": "attn.proj", "attention.sequence_reduction.sequence_reduction": "attn.sr",
                "attention.sequence_reduction.layer_norm": "attn.norm", "mlp.fc1": "mlp.fc1",
                "mlp.fc2": "mlp.fc2", "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
            }[mod]
            out[f"block{s}.{j}.{name}.{p}"] = v
            if mod == "attention.q_proj":
                kk = sd[f"stages.{m[1]}.blocks.{j}.attention.k_proj.{p}"]
                vv = sd[f"stages.{m[1]}.blocks.{j}.attention.v_proj.{p}"]
                out[f"block{s}.{j}.attn.kv.{p}"] = torch.cat([kk, vv])
    out["head.weight"] = torch.randn(1000, 256)  # the ImageNet classifier, which must be skipped
    out["head.bias"] = torch.randn(1000)
    return out


@pytest.fixture(scope="module")
def hf_model() -> SegformerModel:
    torch.manual_seed(0)
    return SegformerModel(SegformerConfig()).eval()  # MiT-b0 defaults, randomly initialised


def _stage_diffs(ours, hf, x):
    with torch.no_grad():
        ref = hf(x, output_hidden_states=True).hidden_states
        got = ours.encoder(x)
    return [float((a - b).abs().max()) for a, b in zip(ref, got, strict=True)]


@pytest.mark.parametrize("layout", ["hf5", "hf4", "hf5-safetensors"])
def test_hf_layouts_reproduce_stage_outputs(hf_model, layout, tmp_path: Path) -> None:
    sd = hf_model.state_dict()
    if layout == "hf4":
        sd = _rename(sd, HF5_TO_HF4, prefix="segformer.")
    path = tmp_path / ("w.safetensors" if "safetensors" in layout else "w.pth")
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    ours = build_sasformer(variant="b0", num_classes=3, strides=STRIDES_SEGFORMER).eval()
    report = load_pretrained(ours, path)
    assert report.layout == "hf" and not [k for k in report.missing if k.startswith("encoder.")]
    assert ours.cfg.layer_norm_eps == 1e-5 and ours.cfg.hf_layer_norm
    assert max(_stage_diffs(ours, hf_model, torch.randn(2, 3, 96, 128))) <= 1e-4


def test_nvlabs_layout_reproduces_stage_outputs(hf_model, tmp_path: Path) -> None:
    path = tmp_path / "mit_b0.pth"
    torch.save({"state_dict": hf_to_nvlabs(hf_model.state_dict())}, path)
    ours = build_sasformer(variant="b0", num_classes=3, strides=STRIDES_SEGFORMER).eval()
    report = load_pretrained(ours, path)
    assert report.layout == "nvlabs" and "head.weight" in report.skipped
    # NVlabs' MiT runs block/stage norms at 1e-6; reproduce with HF set to the same eps
    ref = SegformerModel(SegformerConfig()).eval()
    ref.load_state_dict(hf_model.state_dict())
    for name, m in ref.named_modules():
        if isinstance(m, torch.nn.LayerNorm) and ("layernorm_" in name or re.search(r"stages\.\d\.layer_norm$", name)):
            m.eps = 1e-6
    assert ours.cfg.layer_norm_eps == 1e-6
    assert max(_stage_diffs(ours, ref, torch.randn(1, 3, 64, 64))) <= 1e-4


def test_full_segformer_checkpoint_loads_decoder_too(tmp_path: Path) -> None:
    torch.manual_seed(1)
    hf = SegformerForSemanticSegmentation(SegformerConfig(num_labels=4)).eval()
    path = tmp_path / "segformer.pth"
    torch.save(hf.state_dict(), path)
    ours = build_sasformer(variant="b0", num_classes=4, strides=STRIDES_SEGFORMER).eval()
    load_pretrained(ours, path)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert float((hf(x).logits - ours(x)).abs().max()) <= 1e-4
    # another number of classes: everything but the classifier is taken, and that is reported
    ours5 = build_sasformer(variant="b0", num_classes=5)
    report = load_pretrained(ours5, path)
    assert "decode_head.classifier.weight" in report.skipped


def test_clear_errors(hf_model, tmp_path: Path) -> None:
    ours = build_sasformer(variant="b0", num_classes=2)
    with pytest.raises(PretrainedError, match="not found: .*nope.pth"):
        load_pretrained(ours, tmp_path / "nope.pth")
    b1 = SegformerModel(SegformerConfig(hidden_sizes=[64, 128, 320, 512], decoder_hidden_size=256))
    torch.save(b1.state_dict(), tmp_path / "b1.pth")
    with pytest.raises(PretrainedError, match=r"holds mit_b1 weights, which do not fit mit_b0.*mismatched"):
        load_pretrained(ours, tmp_path / "b1.pth")
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(PretrainedError, match="unrecognised key layout"):
        load_pretrained(ours, tmp_path / "other.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="cannot read pretrained weights .*junk.pth"):
        load_pretrained(ours, tmp_path / "junk.pth")
    partial = {k: v for k, v in hf_model.state_dict().items() if "stages.3." not in k}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(PretrainedError, match="missing"):
        load_pretrained(ours, tmp_path / "partial.pth")


def test_sasformer_bundle_weights_start_a_model(tmp_path: Path) -> None:
    """A bundle's model.safetensors (what `sasformer train` writes) is a valid starting point: same
    outputs with matching classes; another class count keeps all but the classifier."""
    from model import save_bundle

    torch.manual_seed(2)
    trained = build_sasformer(variant="b0", num_classes=4).eval()
    save_bundle(trained, tmp_path / "bundle", {"init": "test"})
    weights = tmp_path / "bundle" / "model.safetensors"
    ours = build_sasformer(variant="b0", num_classes=4).eval()
    report = load_pretrained(ours, weights)
    assert report.layout == "sasformer" and not report.skipped and not report.missing
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(trained(x), ours(x))
    report = load_pretrained(build_sasformer(variant="b0", num_classes=6), weights)
    assert report.skipped == ["decode_head.classifier.bias", "decode_head.classifier.weight"]
    with pytest.raises(PretrainedError, match="which do not fit mit_b1"):
        load_pretrained(build_sasformer(variant="b1", num_classes=4), weights)
