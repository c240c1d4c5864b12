"""Every arm of the experiment scripts makes a valid config: a typo there would cost a 40-minute run to find."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model.cli import load_train_config
from model.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"mscmr_cv.sh": "arms", "mscmr_ablations.sh": "rows", "camvid_cv.sh": "arms"}


def arms(script: str, table: str) -> dict[str, str]:
    """The bash associative array ``declare -A <table>=( [name]="..." ... )`` of a script."""
    text = (ROOT / "scripts" / "experiments" / script).read_text()
    body = re.search(rf"declare -A {table}=\((.*?)\n\)", text, re.S)
    assert body, f"no '{table}' table in {script}"
    found = dict(re.findall(r'\[(\w+)\]="([^"]*)"', body.group(1)))
    assert found, f"empty '{table}' table in {script}"
    return found


CASES = [(script, name, spec) for script, table in SCRIPTS.items() for name, spec in arms(script, table).items()]


@pytest.mark.parametrize(("script", "name", "spec"), CASES, ids=[f"{s}:{n}" for s, n, _ in CASES])
def test_arm_makes_a_valid_training_config(script, name, spec):
    words = spec.split()
    config, overrides = ("mscmr_sasformer", words) if script == "mscmr_ablations.sh" else (words[0], words[1:])
    overrides = [o.replace("@simmim", "runs/x/encoder.safetensors") for o in overrides]
    data = load_train_config(ROOT / "configs" / f"{config}.yaml", overrides)
    TrainConfig.from_dict(data)  # an unknown key, at any depth, or an invalid value raises


def test_the_pre_registered_screens_are_there():
    cv = arms("mscmr_cv.sh", "arms")
    assert {"pce", "stage2", "pce_rot", "stage2_rot", "pce_ssl", "stage2_ssl"} <= set(cv)
    assert cv["pce_rot"] == "mscmr_pce steps=900 rotate_deg=20 rotate_prob=0.5"  # as docs/RESULTS.md §6 fixed it


def test_runs_made_at_900_steps_keep_900_after_the_recipe_moved_to_2700():
    """The configs' recipe is 2700 steps (section 6's decision); every script that reproduces a 900-step table
    must still train 900, or its `run_cli` would resume a finished 900-step run on to 2700."""
    def steps(config: str, overrides: list[str]) -> int:
        return TrainConfig.from_dict(load_train_config(ROOT / "configs" / f"{config}.yaml", overrides)).steps

    assert steps("mscmr_pce", []) == steps("mscmr_sasformer", []) == 2700
    for name, spec in arms("mscmr_cv.sh", "arms").items():
        words = [w.replace("@simmim", "x.safetensors") for w in spec.split()]
        expected = 5400 if name.endswith("_xlong") else 2700 if name.endswith("_long") else 900
        assert steps(words[0], words[1:]) == expected, name
    for name, spec in arms("mscmr_ablations.sh", "rows").items():
        assert not any(kv.startswith("steps=") for kv in spec.split()), name  # the loop sets 900 for every row
    scripts = ROOT / "scripts"
    for script in ("experiments/mscmr.sh", "experiments/mscmr_ablations.sh"):
        assert "--set steps=900" in (scripts / script).read_text(), script
    assert "steps=" not in (scripts / "seed_model.sh").read_text()  # the seed model trains the recipe as it stands


def test_camvid_cv_arms_are_experiment_two_with_stages_only():
    cv = arms("camvid_cv.sh", "arms")
    assert set(cv) == {"pce", "stage2", "four"}  # as docs/RESULTS.md 2-3c fixed them
    stages = {}
    for name, spec in cv.items():
        words = spec.split()
        cfg = TrainConfig.from_dict(load_train_config(ROOT / "configs" / f"{words[0]}.yaml", words[1:]))
        assert cfg.data.simulate == "scribbles" and cfg.steps == 600
        stages[name] = (cfg.loss.alpha, cfg.loss.stages)
    assert stages == {"pce": (0.0, stages["pce"][1]), "stage2": (1.2, (2,)), "four": (1.2, (1, 2, 3, 4))}
