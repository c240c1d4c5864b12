"""Attention heatmaps (GET for stored images, POST for uploads) and the propagated-label map Y_l."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from model import load_bundle
from model.predictor import Predictor

from .conftest import make_project, png_bytes, random_image, upload_image


@pytest.fixture(scope="module")
def setup(client: TestClient) -> tuple[dict, dict, np.ndarray]:
    p = make_project(client, classes=2)
    arr = random_image(40, 48, seed=4)
    return p, upload_image(client, p["id"], arr), arr


def predictor(client: TestClient, project_id: int) -> Predictor:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    return Predictor(load_bundle(ctx.settings.models_dir / str(project_id) / "v1")[0], device="cpu")


@pytest.mark.parametrize("stage", ["1", "4", "mean"])
def test_json_heatmap_matches_predictor(client: TestClient, setup: tuple, stage: str) -> None:
    p, img, arr = setup
    r = client.get(f"/images/{img['id']}/attention", params={"x": 10, "y": 20, "stage": stage, "format": "json"})
    assert r.status_code == 200, r.text
    h = r.json()["heatmap"]
    heat = np.frombuffer(base64.b64decode(h["data"]), "<f4").reshape(h["shape"])
    ref = predictor(client, p["id"]).attention_maps(arr, (10, 20))[stage]
    assert heat.shape == (40, 48) and np.allclose(heat, ref, atol=1e-6)
    assert abs(float(heat.sum()) - 1.0) < 1e-3


def test_png_and_npy(client: TestClient, setup: tuple) -> None:
    _, img, _ = setup
    r = client.get(f"/images/{img['id']}/attention", params={"x": 0, "y": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (48, 40)
    r = client.get(f"/images/{img['id']}/attention", params={"x": 47, "y": 39, "format": "npy"})
    assert np.load(io.BytesIO(r.content)).shape == (40, 48)


def test_post_upload(client: TestClient, setup: tuple) -> None:
    p, img, arr = setup
    r = client.post("/attention", data={"project_id": p["id"], "x": 5, "y": 6, "format": "json"},
                    files={"file": ("a.png", png_bytes(arr))})
    assert r.status_code == 200 and r.json()["image_id"] is None
    stored = client.post("/attention", data={"image_id": img["id"], "x": 5, "y": 6, "format": "json"})
    assert stored.json()["heatmap"]["data"] == r.json()["heatmap"]["data"]


@pytest.mark.parametrize("params,code", [
    ({"x": 48, "y": 0}, 422), ({"x": 0, "y": 40}, 422), ({"x": -1, "y": 0}, 422),
    ({"x": 1, "y": 1, "stage": "5"}, 422), ({"x": 1, "y": 1, "version": 9}, 404), ({"y": 1}, 422),
])
def test_errors(client: TestClient, setup: tuple, params: dict, code: int) -> None:
    _, img, _ = setup
    r = client.get(f"/images/{img['id']}/attention", params=params)
    assert r.status_code == code, r.text
    assert "detail" in r.json()


def test_unknown_image(client: TestClient) -> None:
    assert client.get("/images/999999/attention", params={"x": 1, "y": 1}).status_code == 404
    assert client.get("/images/999999/propagated").status_code == 404


def test_propagated_labels(client: TestClient, setup: tuple) -> None:
    p, img, arr = setup
    r = client.get(f"/images/{img['id']}/propagated", params={"stage": "mean"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    ref = predictor(client, p["id"]).propagated_labels(arr, "mean")
    assert (np.asarray(Image.open(io.BytesIO(r.content))) == ref.class_map).all()
    j = client.get(f"/images/{img['id']}/propagated", params={"stage": "2", "format": "json"}).json()
    assert j["stage"] == "2" and sum(j["areas"].values()) == 40 * 48
    assert client.get(f"/images/{img['id']}/propagated", params={"stage": "x"}).status_code == 422
