import numpy as np
import pytest
import torch
from PIL import Image

from model import Predictor, build_sasformer


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    torch.manual_seed(0)
    return Predictor(build_sasformer(variant="b0", num_classes=3), device="cpu")


@pytest.mark.parametrize("shape", [(301, 457), (301, 457, 3), (33, 17), (64, 64, 4)])
def test_prediction_has_the_image_size(predictor: Predictor, shape) -> None:
    img = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    pred = predictor.predict(img)
    assert pred.class_map.shape == shape[:2] and pred.class_map.dtype == np.uint8
    assert pred.probs.shape == (3, *shape[:2])
    np.testing.assert_allclose(pred.probs.sum(0), 1.0, atol=1e-4)
    assert pred.class_areas().sum() == shape[0] * shape[1]
    assert pred.entropy().shape == shape[:2]


def test_pil_and_16bit_inputs(predictor: Predictor) -> None:
    arr16 = (np.random.default_rng(1).random((40, 50)) * 60000).astype(np.uint16)
    pil = Image.fromarray(arr16)
    assert predictor.predict(pil).class_map.shape == (40, 50)
    assert predictor.predict(arr16).class_map.shape == (40, 50)


def test_tta_flip_and_scales(predictor: Predictor) -> None:
    img = np.random.default_rng(2).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    plain = predictor.predict(img)
    tta = predictor.predict(img, flip=True, scales=(0.5, 1.0, 1.5))
    assert tta.class_map.shape == (70, 90)
    assert not np.allclose(plain.probs, tta.probs)
    # flip TTA of a mirror-symmetric image is symmetric
    sym = np.concatenate([img[:, :45], img[:, :45][:, ::-1]], axis=1)
    p = predictor.predict(sym, flip=True).probs
    np.testing.assert_allclose(p, p[:, :, ::-1], atol=1e-5)


def test_max_side_bounds_the_network_input(predictor: Predictor) -> None:
    small = Predictor(predictor.model, device="cpu", max_side=64)
    img = np.random.default_rng(3).integers(0, 255, (200, 300), dtype=np.uint8)
    assert small.predict(img).class_map.shape == (200, 300)


def test_attention_maps_per_stage_and_mean(predictor: Predictor) -> None:
    img = np.random.default_rng(4).integers(0, 255, (301, 457), dtype=np.uint8)
    maps = predictor.attention_maps(img, (456, 0))
    assert sorted(maps) == ["1", "2", "3", "4", "mean"]
    for heat in maps.values():
        assert heat.shape == (301, 457) and (heat >= 0).all()
        assert heat.sum() == pytest.approx(1.0, rel=1e-3)
    assert predictor.attention_map(img, (10, 10), stage=2).shape == (301, 457)
    with pytest.raises(ValueError, match="outside the image"):
        predictor.attention_map(img, (457, 0))
    with pytest.raises(ValueError, match="stage must be"):
        predictor.attention_map(img, (0, 0), stage=5)


def test_propagated_labels(predictor: Predictor) -> None:
    img = np.random.default_rng(5).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    for stage in (1, 4, "mean"):
        y = predictor.propagated_labels(img, stage)
        assert y.class_map.shape == (50, 70)
        np.testing.assert_allclose(y.probs.sum(0), 1.0, atol=1e-4)


def test_picks_cuda_when_present() -> None:
    p = Predictor(build_sasformer(variant="b0", num_classes=2))
    assert p.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
