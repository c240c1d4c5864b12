"""Every shipped training config parses into a TrainConfig (a PretrainConfig for `*_simmim`) and points at its
dataset by spec."""

from pathlib import Path

import pytest
import yaml

from model.config import TrainConfig
from model.data import parse_spec
from model.simmim import PretrainConfig

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses(path: Path) -> None:
    cls = PretrainConfig if path.stem.endswith("_simmim") else TrainConfig
    cfg = cls.from_dict(yaml.safe_load(path.read_text()))
    kind, _ = parse_spec(cfg.data.train)
    assert kind in ("mscmr", "camvid", "folder")
    assert cfg.out_dir == f"runs/{path.stem}"
    if cfg.data.target == "sparse" and kind == "camvid":
        assert cfg.data.simulate in ("scribbles", "points")  # CamVid has no human sparse labels


def test_there_are_configs() -> None:
    assert len(CONFIGS) >= 7
