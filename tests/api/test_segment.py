"""POST /segment: uploads and stored images, PNG and JSON (RLE), TTA, probabilities, cache, errors."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.services.encoding import rle_decode
from model import load_bundle
from model.predictor import Predictor

from .conftest import make_project, png_bytes, random_image, upload_image


@pytest.fixture(scope="module")
def setup(client: TestClient) -> tuple[dict, dict, np.ndarray]:
    p = make_project(client, classes=3)
    arr = random_image(40, 56, seed=3)
    return p, upload_image(client, p["id"], arr), arr


def reference(client: TestClient, project_id: int, arr: np.ndarray, **kw: object) -> object:
    """The bare library call on the same bundle: what the API must return."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    model, _ = load_bundle(ctx.settings.models_dir / str(project_id) / "v1")
    return Predictor(model, device="cpu").predict(arr, **kw)


def test_json_matches_the_predictor(client: TestClient, setup: tuple) -> None:
    p, img, arr = setup
    r = client.post("/segment", data={"image_id": img["id"], "probabilities": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    ref = reference(client, p["id"], arr)
    assert body["model_version"] == 1 and (body["height"], body["width"]) == (40, 56)
    assert [c["name"] for c in body["classes"]] == ["c0", "c1", "c2"]
    class_map = np.full((40, 56), 255, np.uint8)
    for m in body["masks"]:
        mask = rle_decode(m["rle"])
        assert m["area"] == int(mask.sum()) == body["areas"][m["name"]]
        class_map[mask] = m["class_id"]
    assert (class_map == ref.class_map).all()  # type: ignore[attr-defined]
    assert sum(body["areas"].values()) == 40 * 56
    probs = body["probabilities"]
    assert probs["dtype"] == "float16" and probs["shape"] == [3, 40, 56]
    a = np.frombuffer(base64.b64decode(probs["data"]), "<f2").reshape(3, 40, 56)
    assert np.allclose(a, ref.probs, atol=2e-3)  # type: ignore[attr-defined]


def test_png_and_cache(client: TestClient, setup: tuple) -> None:
    p, img, arr = setup
    r1 = client.post("/segment", data={"image_id": img["id"], "format": "png", "flip": "true"})
    r2 = client.post("/segment", data={"image_id": img["id"], "format": "png", "flip": "true"})
    assert r1.status_code == r2.status_code == 200
    assert r1.headers["x-cached"] == "false" and r2.headers["x-cached"] == "true"
    assert r1.content == r2.content
    assert float(r1.headers["server-timing"].split("dur=")[1]) > 0 and r2.headers["server-timing"] == "model;dur=0.0"
    im = Image.open(io.BytesIO(r1.content))
    assert im.mode == "P" and im.size == (56, 40)
    ref = reference(client, p["id"], arr, flip=True)
    assert (np.asarray(im) == ref.class_map).all()  # type: ignore[attr-defined]
    areas = json.loads(r1.headers["x-class-areas"])
    assert sum(areas.values()) == 40 * 56
    # other TTA options are cached separately
    r3 = client.post("/segment", data={"image_id": img["id"], "format": "png", "scales": "0.5,1"})
    assert r3.headers["x-cached"] == "false"


def test_upload(client: TestClient, setup: tuple) -> None:
    p, _, arr = setup
    r = client.post("/segment", data={"project_id": p["id"]}, files={"file": ("x.png", png_bytes(arr))})
    assert r.status_code == 200, r.text
    assert r.json()["image_id"] is None and r.json()["cached"] is False


@pytest.mark.parametrize("data,files,code,needle", [
    ({}, None, 422, "exactly one"),
    ({"image_id": "1", "project_id": "1"}, {"file": ("x.png", b"x")}, 422, "exactly one"),
    ({}, {"file": ("x.png", png_bytes(random_image()))}, 422, "project_id"),
    ({"project_id": "999999"}, {"file": ("x.png", png_bytes(random_image()))}, 404, "project 999999"),
    ({"image_id": "999999"}, None, 404, "image 999999"),
    ({"project_id": "PID"}, {"file": ("x.png", b"not an image")}, 415, "cannot decode"),
    ({"image_id": "IID", "version": "7"}, None, 404, "model version 7"),
    ({"image_id": "IID", "scales": "a,b"}, None, 422, "scales"),
    ({"image_id": "IID", "scales": "0.1"}, None, 422, "scales"),
    ({"image_id": "IID", "format": "gif"}, None, 422, ""),
    ({"image_id": "IID", "project_id": "999999"}, None, 422, "belongs to project"),
])
def test_errors(client: TestClient, setup: tuple, data: dict, files: dict | None, code: int, needle: str) -> None:
    p, img, _ = setup
    data = {k: v.replace("PID", str(p["id"])).replace("IID", str(img["id"])) for k, v in data.items()}
    r = client.post("/segment", data=data, files=files)
    assert r.status_code == code, r.text
    assert needle in json.dumps(r.json()["detail"])


def test_rle_encoder_roundtrip() -> None:
    from backend.services.encoding import rle_encode

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 33)]:
        m = rng.random(shape) > 0.5
        rle = rle_encode(m)
        assert rle["size"] == list(shape) and isinstance(rle["counts"], str)
        assert (rle_decode(rle) == m).all()
