import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from model.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["info"], ["init"], ["predict"], ["attention"]])
def test_help_for_every_subcommand(command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_init_predict_attention_end_to_end(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    r = runner.invoke(
        app, ["init", "-o", str(bundle), "--classes", "bg,fg,edge", "--colors", "#000000,#ff0000,#00ff00"]
    )
    assert r.exit_code == 0, r.output
    img = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 61), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["predict", str(img), "-m", str(bundle), "-o", str(out), "--flip", "--overlay", "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    label = Image.open(out / "a.png")
    assert label.mode == "P" and label.size == (61, 45)
    assert label.getpalette()[:9] == [0, 0, 0, 255, 0, 0, 0, 255, 0]
    areas = json.loads((out / "a.json").read_text())["area_px"]
    assert sum(areas.values()) == 45 * 61 and list(areas) == ["bg", "fg", "edge"]
    assert (out / "a_overlay.jpg").is_file()
    r = runner.invoke(
        app, ["attention", str(img), "-m", str(bundle), "--x", "5", "--y", "7", "-o", str(out), "--device", "cpu"]
    )
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("a_attn_*.png")) == [f"a_attn_{k}.png" for k in ("1", "2", "3", "4", "mean")]


def test_errors_name_the_file_and_exit_2(tmp_path: Path) -> None:
    r = runner.invoke(app, ["predict", str(tmp_path / "x.png"), "-m", str(tmp_path / "nobundle"), "-o", str(tmp_path)])
    assert r.exit_code == 2 and "model bundle not found" in r.output and "nobundle" in r.output
    bundle = tmp_path / "b"
    assert runner.invoke(app, ["init", "-o", str(bundle), "--classes", "a,b"]).exit_code == 0
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    r = runner.invoke(app, ["predict", str(bad), "-m", str(bundle), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "cannot read image" in r.output and "broken.png" in r.output
    r = runner.invoke(
        app, ["init", "-o", str(tmp_path / "c"), "--classes", "a", "--pretrained", str(tmp_path / "w.pth")]
    )
    assert r.exit_code == 2 and "not found" in r.output and "w.pth" in r.output
    r = runner.invoke(app, ["init", "-o", str(tmp_path / "d"), "--classes", "a", "--variant", "b7"])
    assert r.exit_code == 2 and "unknown MiT variant" in r.output
    r = runner.invoke(app, ["attention", str(bad), "-m", str(bundle), "--x", "0", "--y", "0", "-o", str(tmp_path)])
    assert r.exit_code == 2 and "broken.png" in r.output


def test_train_and_eval_commands_on_a_dataset_folder(tmp_path: Path) -> None:
    from .toy import write_toy_folder

    root = write_toy_folder(tmp_path / "toy")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"model: {{variant: b0}}\ndata: {{train: 'folder:{root}', val: '{root}'}}\n"
        "steps: 3\nbatch_size: 2\ncrop_size: 64\nwarmup_steps: 1\nval_every: 2\nlog_every: 1\ndevice: cpu\n"
    )
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "-c", str(cfg), "--set", "loss.alpha=0.2", "--out-dir", str(run)])
    assert r.exit_code == 0, r.output
    assert "completed after 3 steps" in r.output
    assert json.loads((run / "config.json").read_text())["loss"]["alpha"] == 0.2
    out = tmp_path / "eval"
    r = runner.invoke(app, ["eval", "-m", str(run / "best"), "--data", str(root), "--split", "val", "-o", str(out),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == ["background", "disc", "square"] and len(report["confusion_matrix"]) == 3
    assert len(list((out / "predictions").glob("*.png"))) == 2


def test_train_and_eval_errors(tmp_path: Path) -> None:
    r = runner.invoke(app, ["train", "-c", str(tmp_path / "missing.yaml")])
    assert r.exit_code == 2 and "config file not found" in r.output and "missing.yaml" in r.output
    r = runner.invoke(app, ["train", "--set", "steps=3", "--set", "data.train=folder:" + str(tmp_path / "nodata")])
    assert r.exit_code == 2 and "nodata" in r.output
    r = runner.invoke(app, ["train", "--set", "stpes=3"])
    assert r.exit_code == 2 and "unknown training config keys" in r.output
    r = runner.invoke(app, ["eval", "-m", str(tmp_path / "nobundle"), "--data", str(tmp_path)])
    assert r.exit_code == 2 and "nobundle" in r.output


def test_labels_report_and_simulation(tmp_path: Path) -> None:
    from .toy import write_toy_folder

    root = write_toy_folder(tmp_path / "toy")
    r = runner.invoke(app, ["labels", "--data", str(root), "--split", "train"])
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output[r.output.index("{"):])
    assert stats["images"] == 6 and 0 < stats["labeled_fraction"] < 0.2
    out = tmp_path / "sim"
    r = runner.invoke(app, ["labels", "--data", str(root), "--split", "val", "--simulate", "points", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert len(list(out.glob("*.png"))) == 2
    r = runner.invoke(app, ["labels", "--data", str(root), "--simulate", "blobs"])
    assert r.exit_code == 2 and "--simulate must be" in r.output
