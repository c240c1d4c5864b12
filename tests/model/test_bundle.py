import json
from pathlib import Path

import pytest
import torch

from model import BundleError, ModelConfig, build_sasformer, load_bundle, read_bundle_meta, save_bundle


def test_round_trip_keeps_weights_config_and_provenance(tmp_path: Path) -> None:
    cfg = ModelConfig(variant="b0", num_classes=3, class_names=["bg", "road", "car"],
                      class_colors=[(0, 0, 0), (128, 64, 128), (64, 0, 128)], mean=(0.5, 0.5, 0.5),
                      std=(0.25, 0.25, 0.25))
    model = build_sasformer(cfg).eval()
    path = save_bundle(model, tmp_path / "v1", {"steps": 10, "metrics": {"miou": 0.5}})
    loaded, bundle = load_bundle(path)
    assert bundle.config == model.cfg
    assert bundle.provenance["metrics"]["miou"] == 0.5
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    meta = json.loads((path / "bundle.json").read_text())
    assert meta["format_version"] == 1 and meta["code_version"]
    assert [p.name for p in tmp_path.iterdir()] == ["v1"]  # no temp directory left behind


def test_existing_bundle_needs_overwrite_and_is_replaced_atomically(tmp_path: Path) -> None:
    model = build_sasformer(variant="b0", num_classes=2)
    save_bundle(model, tmp_path / "m")
    with pytest.raises(BundleError, match="already exists"):
        save_bundle(model, tmp_path / "m")
    save_bundle(model, tmp_path / "m", {"second": True}, overwrite=True)
    assert read_bundle_meta(tmp_path / "m").provenance == {"second": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_bad_bundles_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="is not a model bundle"):
        load_bundle(tmp_path / "empty")
    path = save_bundle(build_sasformer(variant="b0", num_classes=2), tmp_path / "future")
    meta = json.loads((path / "bundle.json").read_text())
    meta["format_version"] = 99
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="newer than this code"):
        load_bundle(path)
    meta["format_version"] = 1
    meta["config"]["num_classes"] = 7
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="bad model config .*2 class names given for num_classes=7"):
        load_bundle(path)
    meta["config"].update(class_names=[str(i) for i in range(7)], class_colors=[[0, 0, 0]] * 7)
    (path / "bundle.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="weights do not match its config"):
        load_bundle(path)
