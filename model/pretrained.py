"""Load official SegFormer / MiT weights from a local file (nothing is ever downloaded).

Supported key layouts, detected from the keys:

* ``nvlabs``: NVlabs' ImageNet ``mit_b*.pth`` (``patch_embed1.proj``, ``block1.0.attn.q``, ``norm1``...)
  and mmseg 0.x SegFormer checkpoints (the same under ``backbone.``, plus ``decode_head.linear_c4``,
  ``linear_fuse.conv/bn``, ``linear_pred``).
* ``hf``: HF ``SegformerModel`` / ``SegformerForSemanticSegmentation`` in both the transformers 4.x
  names (``encoder.block.0.0.attention.self.query``...) and the 5.x names
  (``stages.0.blocks.0.attention.q_proj``...), with or without the ``segformer.`` prefix.
* ``sasformer``: our own names, i.e. the ``model.safetensors`` of a bundle written by ``sasformer
  train`` or a fine-tune job, so a model trained offline can start a project or a job (its decoder
  is taken when the number of classes matches).

The LayerNorm eps travels with the layout: NVlabs' code runs block/stage norms at 1e-6 (our
default), HF runs every norm at 1e-5; loading an HF file switches the model to HF's eps so its
outputs are reproduced exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .config import MIT_VARIANTS

ENC = "encoder.backbone."


class PretrainedError(ValueError):
    """A checkpoint that cannot be loaded into the model: the message says which file and why."""


@dataclass
class LoadReport:
    path: str
    layout: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # keys of the file not used (e.g. ImageNet head)
    missing: list[str] = field(default_factory=list)  # model keys left at their initialisation


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PretrainedError(f"pretrained weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd: object = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt or foreign file: say which
        raise PretrainedError(f"cannot read pretrained weights {path}: {e}") from e
    for wrapper in ("state_dict", "model", "module"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise PretrainedError(f"{path} does not hold a state dict of tensors")
    out = {}
    for k, v in sd.items():
        for prefix in ("module.", "backbone.", "segformer."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def detect_layout(keys: list[str]) -> str:
    if any(k.startswith(ENC) for k in keys):
        return "sasformer"
    if any(k.startswith(("patch_embed1.", "block1.")) for k in keys):
        return "nvlabs"
    if any(k.startswith(("encoder.block.", "encoder.patch_embeddings.", "stages.0.blocks.")) for k in keys):
        return "hf"
    return "unknown"


_BLOCK_NV = {"norm1": "norm1", "norm2": "norm2", "attn.q": "attn.q", "attn.kv": "attn.kv",
             "attn.proj": "attn.proj", "attn.sr": "attn.sr", "attn.norm": "attn.norm",
             "mlp.fc1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv", "mlp.fc2": "mlp.fc2"}
_BLOCK_HF = {
    # transformers 4.x names
    "layer_norm_1": "norm1", "layer_norm_2": "norm2", "attention.self.query": "attn.q",
    "attention.self.key": "attn.k", "attention.self.value": "attn.v", "attention.output.dense": "attn.proj",
    "attention.self.sr": "attn.sr", "attention.self.layer_norm": "attn.norm",
    "mlp.dense1": "mlp.fc1", "mlp.dwconv.dwconv": "mlp.dwconv", "mlp.dense2": "mlp.fc2",
    # transformers 5.x names
    "layernorm_before": "norm1", "layernorm_after": "norm2", "attention.q_proj": "attn.q",
    "attention.k_proj": "attn.k", "attention.v_proj": "attn.v", "attention.o_proj": "attn.proj",
    "attention.sequence_reduction.sequence_reduction": "attn.sr",
    "attention.sequence_reduction.layer_norm": "attn.norm",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}
_HEAD_MMSEG = {"linear_fuse.conv": "linear_fuse", "linear_fuse.bn": "batch_norm", "linear_pred": "classifier"}


def _patch_embed(stage: int) -> str:
    return f"{ENC}patch_embed" if stage == 0 else f"{ENC}stages.{stage}.downsample"


def _map_key(key: str, layout: str) -> str | None:
    """Our name for a checkpoint key (``attn.k``/``attn.v`` are merged into ``attn.kv`` later)."""
    if layout == "sasformer":
        return key
    name, _, param = key.rpartition(".")
    if layout == "nvlabs":
        if m := re.fullmatch(r"patch_embed(\d)\.(proj|norm)", name):
            return f"{_patch_embed(int(m[1]) - 1)}.{m[2]}.{param}"
        if m := re.fullmatch(r"block(\d)\.(\d+)\.(.+)", name):
            sub = _BLOCK_NV.get(m[3])
            return f"{ENC}stages.{int(m[1]) - 1}.blocks.{m[2]}.{sub}.{param}" if sub else None
        if m := re.fullmatch(r"norm(\d)", name):
            return f"{ENC}stages.{int(m[1]) - 1}.norm.{param}"
        if m := re.fullmatch(r"decode_head\.linear_c(\d)\.proj", name):
            return f"decode_head.linear_c.{int(m[1]) - 1}.proj.{param}"
        if name.startswith("decode_head.") and (sub := _HEAD_MMSEG.get(name[len("decode_head."):])):
            return f"decode_head.{sub}.{param}"
        return None
    if layout == "hf":
        if m := re.fullmatch(r"(?:encoder\.patch_embeddings\.(\d)|stages\.(\d)\.patch_embeddings)\.(proj|layer_norm)",
                             name):
            stage = int(m[1] if m[1] is not None else m[2])
            return f"{_patch_embed(stage)}.{'proj' if m[3] == 'proj' else 'norm'}.{param}"
        if m := re.fullmatch(r"(?:encoder\.block\.(\d)\.|stages\.(\d)\.blocks\.)(\d+)\.(.+)", name):
            stage = int(m[1] if m[1] is not None else m[2])
            sub = _BLOCK_HF.get(m[4])
            return f"{ENC}stages.{stage}.blocks.{m[3]}.{sub}.{param}" if sub else None
        if m := re.fullmatch(r"(?:encoder\.layer_norm\.(\d)|stages\.(\d)\.layer_norm)", name):
            stage = int(m[1] if m[1] is not None else m[2])
            return f"{ENC}stages.{stage}.norm.{param}"
        if m := re.fullmatch(r"decode_head\.(?:linear_c|linear_projections)\.(\d)\.proj", name):
            return f"decode_head.linear_c.{m[1]}.proj.{param}"
        if name in ("decode_head.linear_fuse", "decode_head.batch_norm", "decode_head.classifier"):
            return f"{name}.{param}"
        return None
    return None


def _checkpoint_variant(sd: dict[str, torch.Tensor]) -> str:
    """Best guess of the MiT variant a mapped state dict holds, for error messages."""
    dims = []
    for i in range(4):
        w = sd.get(f"{_patch_embed(i)}.proj.weight")
        dims.append(int(w.shape[0]) if w is not None else -1)
    depths = []
    for i in range(4):
        idx = {int(m[1]) for k in sd if (m := re.match(rf"{re.escape(ENC)}stages\.{i}\.blocks\.(\d+)\.", k))}
        depths.append(max(idx) + 1 if idx else 0)
    for name, v in MIT_VARIANTS.items():
        if tuple(dims) == v["embed_dims"] and tuple(depths) == v["depths"]:
            return f"mit_{name}"
    return f"an unknown MiT (embed dims {tuple(dims)}, depths {tuple(depths)})"


def convert_state_dict(raw: dict[str, torch.Tensor], layout: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map a foreign state dict to our names; returns it and the foreign keys that have no counterpart."""
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    kv_parts: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in raw.items():
        ours = _map_key(k, layout)
        if ours is None:
            skipped.append(k)
            continue
        if ".attn.k." in ours or ".attn.v." in ours:
            which = "k" if ".attn.k." in ours else "v"
            kv_key = ours.replace(f".attn.{which}.", ".attn.kv.")
            kv_parts.setdefault(kv_key, {})[which] = v
            continue
        out[ours] = v
    for kv_key, parts in kv_parts.items():
        if set(parts) != {"k", "v"}:
            raise PretrainedError(f"checkpoint has only the {set(parts)} projection for {kv_key}")
        out[kv_key] = torch.cat([parts["k"], parts["v"]], dim=0)  # timm's kv: keys first
    return out, skipped


def load_pretrained(model: nn.Module, path: str | Path, include_decoder: bool = True,
                    strict_encoder: bool = True) -> LoadReport:
    """Load MiT/SegFormer weights from ``path`` into a ``SASFormer`` in place.

    The encoder must match completely (a wrong variant or shape is an error naming both); decoder
    weights are taken when present and shape-compatible (a classifier for another number of classes
    is skipped and reported). For the HF layout the model's LayerNorms switch to eps 1e-5.
    """
    path = Path(path)
    raw = _read_state_dict(path)
    layout = detect_layout(list(raw))
    if layout == "unknown":
        sample = ", ".join(list(raw)[:5])
        raise PretrainedError(
            f"{path}: unrecognised key layout (first keys: {sample}); "
            "expected NVlabs/mmseg MiT, HF Segformer or a SASFormer bundle"
        )
    sd, skipped = convert_state_dict(raw, layout)
    own = model.state_dict()
    cfg = getattr(model, "cfg", None)
    enc_keys = [k for k in sd if k.startswith("encoder.")]
    if not enc_keys:
        raise PretrainedError(f"{path}: no encoder weights found")
    mismatched = [k for k in enc_keys if k not in own or own[k].shape != sd[k].shape]
    missing_enc = [k for k in own if k.startswith("encoder.") and k not in sd]
    if strict_encoder and (mismatched or missing_enc):
        want = f"mit_{cfg.variant}" if cfg is not None else "the model"
        detail = []
        if mismatched:
            k = mismatched[0]
            got = tuple(sd[k].shape)
            exp = tuple(own[k].shape) if k in own else "no such parameter"
            detail.append(f"{len(mismatched)} mismatched, e.g. {k}: file {got} vs model {exp}")
        if missing_enc:
            detail.append(f"{len(missing_enc)} missing, e.g. {missing_enc[0]}")
        raise PretrainedError(
            f"{path} holds {_checkpoint_variant(sd)} weights, which do not fit {want}: " + "; ".join(detail)
        )
    to_load = {}
    for k, v in sd.items():
        if k.startswith("decode_head.") and not include_decoder:
            skipped.append(k)
        elif k in own and own[k].shape == v.shape:
            to_load[k] = v
        else:
            skipped.append(k)
    result = model.load_state_dict(to_load, strict=False)
    report = LoadReport(str(path), layout, sorted(to_load), sorted(skipped), sorted(result.missing_keys))
    if layout == "hf":
        set_layer_norm_eps(model, 1e-5, all_norms=True)
    return report


def set_layer_norm_eps(model: nn.Module, eps: float, all_norms: bool) -> None:
    """Run the encoder's LayerNorms at the eps its weights were trained with; record it in the config.

    ``all_norms`` (HF) covers patch-embedding and spatial-reduction norms too; otherwise only the
    block and stage norms, which is where NVlabs' code differs from torch's 1e-5 default.
    """
    backbone = model.get_submodule("encoder.backbone")
    for name, m in backbone.named_modules():
        is_block_or_stage_norm = re.fullmatch(r"stages\.\d+\.(blocks\.\d+\.norm[12]|norm)", name) is not None
        if isinstance(m, nn.LayerNorm) and (all_norms or is_block_or_stage_norm):
            m.eps = eps
    cfg = getattr(model, "cfg", None)
    if cfg is not None:
        cfg.layer_norm_eps = eps
        cfg.hf_layer_norm = all_norms


@dataclass
class CheckpointInfo:
    """What a checkpoint file holds, read from its header only (no tensor is loaded)."""

    layout: str | None  # None: not readable without loading the whole file (.pth/.bin pickles)
    num_classes: int | None = None  # classes of the decode head it carries, if any


def describe(path: str | Path) -> CheckpointInfo:
    """Layout and head size of a ``.safetensors`` file from its header, for listing seed models cheaply;
    pickled checkpoints (``.pth``/``.bin``) would have to be loaded whole, so they are not described."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return CheckpointInfo(None)
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            layout = detect_layout(keys)
            head = next((k for k in ("decode_head.classifier.weight",) if k in keys), None)
            classes = int(f.get_slice(head).get_shape()[0]) if head is not None else None
    except Exception as e:  # a truncated or foreign file: listed, with the reason, never a 500
        raise PretrainedError(f"{path.name}: unreadable safetensors header: {e}") from e
    return CheckpointInfo(layout, classes)
