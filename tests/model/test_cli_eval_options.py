"""``sasformer eval --lcc`` and ``--folds/--fold``: options reach the report, bad combinations fail cleanly."""

import json
from pathlib import Path

from typer.testing import CliRunner

from model.cli import app

from .toy import write_toy_folder

runner = CliRunner()


def test_eval_lcc_flip_and_fold_options(tmp_path: Path) -> None:
    root = write_toy_folder(tmp_path / "toy")
    bundle = tmp_path / "m"
    r = runner.invoke(app, ["init", "-o", str(bundle), "--classes", "background,disc,square"])
    assert r.exit_code == 0, r.output
    reports = {}
    for name, opts in {"plain": [], "lcc": ["--lcc"], "flip": ["--flip"]}.items():
        out = tmp_path / name
        r = runner.invoke(app, ["eval", "-m", str(bundle), "--data", str(root), "--split", "val", "-o", str(out),
                                "--device", "cpu", *opts])
        assert r.exit_code == 0, r.output
        reports[name] = json.loads((out / "report.json").read_text())
    assert (reports["plain"]["lcc"], reports["plain"]["flip"]) == (False, False)
    assert (reports["lcc"]["lcc"], reports["lcc"]["flip"]) == (True, False)
    assert (reports["flip"]["lcc"], reports["flip"]["flip"]) == (False, True)
    # LCC only turns pixels of non-background classes into background: those totals cannot grow
    predicted = {k: [sum(col) for col in zip(*r["confusion_matrix"], strict=True)] for k, r in reports.items()}
    assert all(predicted["lcc"][c] <= predicted["plain"][c] for c in (1, 2))
    assert predicted["lcc"][0] >= predicted["plain"][0]
    r = runner.invoke(app, ["eval", "-m", str(bundle), "--data", str(root), "--fold", "0"])
    assert r.exit_code == 2 and "--folds and --fold go together" in r.output
    folds = tmp_path / "folds.json"
    folds.write_text(json.dumps({"folds": [["a"], ["b"]]}))
    r = runner.invoke(app, ["eval", "-m", str(bundle), "--data", str(root), "--folds", str(folds), "--fold", "0"])
    assert r.exit_code == 2 and "in no fold" in r.output  # images without a subject cannot be held out
