"""The services without HTTP: SegmentationService and ImageService called directly, and thin routers."""

from __future__ import annotations

import ast
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.deps import AppContext
from backend.services.images import Upload
from backend.services.segmentation import Target
from core.errors import ErrorCode, ServiceError
from core.orm import Image as ImageRow
from core.orm import Project
from model import load_bundle
from model.predictor import Predictor

from .conftest import make_project, png_bytes, random_image, upload_image

ROUTERS = Path(__file__).resolve().parents[2] / "backend" / "routers"


@pytest.fixture(scope="module")
def ctx(client: TestClient) -> AppContext:
    return client.app.state.ctx  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def setup(client: TestClient) -> tuple[dict, dict, np.ndarray]:
    p = make_project(client, classes=3)
    arr = random_image(32, 40, seed=11)
    return p, upload_image(client, p["id"], arr), arr


def _reference(ctx: AppContext, project_id: int) -> Predictor:
    model, _ = load_bundle(ctx.settings.models_dir / str(project_id) / "v1")
    return Predictor(model, device="cpu")


def test_segment_a_stored_image_directly(ctx: AppContext, setup: tuple) -> None:
    p, img, arr = setup
    ref = _reference(ctx, p["id"]).predict(arr)
    with ctx.sessions() as s:
        first = ctx.segmentation.segment(s, Target(image_id=img["id"]))
        again = ctx.segmentation.segment(s, Target(image_id=img["id"], project_id=p["id"]))
    assert first.version == 1 and first.image is not None and first.image.id == img["id"]
    assert (first.prediction.class_map == ref.class_map).all()
    assert not first.cached and again.cached and again.model_ms == 0.0
    assert sum(first.areas.values()) == 32 * 40 and list(first.areas) == ["c0", "c1", "c2"]
    png = first.encode("png")
    assert png.media_type == "image/png" and png.headers["X-Model-Version"] == "1"
    assert json.loads(png.headers["X-Class-Areas"]) == first.areas
    assert (np.asarray(Image.open(io.BytesIO(png.body))) == ref.class_map).all()
    body = json.loads(first.encode("json", probabilities=True).body)
    assert body["image_id"] == img["id"] and body["areas"] == first.areas and body["probabilities"]["shape"] == [
        3, 32, 40]
    assert json.loads(first.encode("json").body)["probabilities"] is None


def test_segment_an_upload_directly_is_never_cached(ctx: AppContext, setup: tuple) -> None:
    p, _, arr = setup
    with ctx.sessions() as s:
        upload = Upload("a.png", io.BytesIO(png_bytes(arr)))
        out = ctx.segmentation.segment(s, Target(project_id=p["id"], upload=upload), flip=True)
    assert out.image is None and not out.cached
    assert (out.prediction.class_map == _reference(ctx, p["id"]).predict(arr, flip=True).class_map).all()


@pytest.mark.parametrize("target,code,needle", [
    (Target(), ErrorCode.INVALID, "exactly one"),
    (Target(image_id=1, upload=Upload("a.png", io.BytesIO(b"x"))), ErrorCode.INVALID, "exactly one"),
    (Target(upload=Upload("a.png", io.BytesIO(b"x"))), ErrorCode.INVALID, "project_id"),
    (Target(image_id=999_999), ErrorCode.NOT_FOUND, "image 999999"),
])
def test_input_errors(ctx: AppContext, target: Target, code: ErrorCode, needle: str) -> None:
    with ctx.sessions() as s, pytest.raises(ServiceError) as e:
        ctx.segmentation.segment(s, target)
    assert e.value.code == code and needle in e.value.detail


def test_attention_and_propagated_directly(ctx: AppContext, setup: tuple) -> None:
    p, img, arr = setup
    ref = _reference(ctx, p["id"])
    with ctx.sessions() as s:
        att = ctx.segmentation.attention(s, Target(image_id=img["id"]), 5, 7, stage="2")
        prop = ctx.segmentation.propagated(s, img["id"], stage="mean")
        with pytest.raises(ServiceError, match="outside the image"):
            ctx.segmentation.attention(s, Target(image_id=img["id"]), 40, 0)
    assert np.allclose(att.heat, ref.attention_maps(arr, (5, 7))["2"])
    assert att.encode("png").media_type == "image/png" and att.encode("npy").headers == {"X-Model-Version": "1"}
    assert json.loads(att.encode("json").body)["stage"] == "2"
    assert (prop.prediction.class_map == ref.propagated_labels(arr, "mean").class_map).all()
    assert prop.encode("json").headers == {} and prop.encode("png").headers == {"X-Model-Version": "1"}


def test_image_service_dedupes_and_deletes_shared_files_last(client: TestClient, ctx: AppContext) -> None:
    a, b = make_project(client), make_project(client)
    data = png_bytes(random_image(20, 24, seed=21))
    with ctx.sessions() as s:
        proj_a, proj_b = s.get(Project, a["id"]), s.get(Project, b["id"])
        assert proj_a is not None and proj_b is not None
        first = ctx.images.add(s, proj_a, Upload("x.png", io.BytesIO(data)))
        s.commit()
        with pytest.raises(ServiceError, match=f"as image {first.id}") as dup:
            ctx.images.add(s, proj_a, Upload("again.png", io.BytesIO(data)))
        assert dup.value.code == ErrorCode.CONFLICT
        s.rollback()
        other = ctx.images.add(s, proj_b, Upload("x.png", io.BytesIO(data)))
        s.commit()
        path = ctx.images.original(first)
        ctx.images.delete(s, s.get(ImageRow, first.id))  # type: ignore[arg-type]
        assert path.is_file()  # project b still has the same content
        ctx.images.delete(s, s.get(ImageRow, other.id))  # type: ignore[arg-type]
        assert not path.exists()


def test_upload_limit_and_thumbnail_cap(ctx: AppContext, setup: tuple) -> None:
    limit = ctx.settings.max_upload_bytes
    assert Upload(None, io.BytesIO(b"x" * limit)).read(limit) == b"x" * limit
    with pytest.raises(ServiceError, match=f"limit of {limit} bytes") as e:
        Upload(None, io.BytesIO(b"x" * (limit + 1))).read(limit)
    assert e.value.code == ErrorCode.TOO_LARGE
    _, img, _ = setup
    with ctx.sessions() as s:
        row = s.get(ImageRow, img["id"])
        assert row is not None
        thumb = ctx.images.thumbnail(row, 16)
    assert thumb.is_file() and max(Image.open(thumb).size) == 16


def test_model_service_delete_drops_the_versions_cached_predictions(client: TestClient, ctx: AppContext) -> None:
    from .test_models import add_version

    p = make_project(client, classes=2)
    img = upload_image(client, p["id"], random_image(24, 24, seed=31))
    number = add_version(client, p["id"], seed=5)
    with ctx.sessions() as s:
        out = ctx.segmentation.segment(s, Target(image_id=img["id"]), version=number)
        project = s.get(Project, p["id"])
        assert project is not None and not out.cached
        cache = ctx.predictions.root / str(ctx.registry.get(s, project, number).id)
        assert any(cache.iterdir())
        assert [v.version for v in ctx.models.list(s, project)] == [1, number]
        ctx.models.delete(s, project, number)
        assert [v.version for v in ctx.models.list(s, project)] == [1]
    assert not cache.exists()


def test_exporter_names_its_files(client: TestClient, ctx: AppContext, setup: tuple) -> None:
    p, _, _ = setup
    with ctx.sessions() as s:
        project = s.get(Project, p["id"])
        assert project is not None
        masks = ctx.exports.masks_zip(s, project)
        labels = ctx.exports.labels_zip(s, project)
        coco = ctx.exports.coco(s, project, "labels", number=999)  # labels: the version is not looked up
    assert masks.name == f"project{p['id']}-masks-v1.zip" and masks.data[:2] == b"PK"
    assert labels.disposition == {"Content-Disposition": f'attachment; filename="project{p["id"]}-labels.zip"'}
    assert coco["info"]["model_version"] is None


def test_no_router_imports_another_router() -> None:
    names = {p.stem for p in ROUTERS.glob("*.py")} - {"__init__"}
    for path in ROUTERS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                local = node.level == 1 and (node.module in names or node.module is None)
                absolute = node.level == 0 and (node.module or "").startswith("backend.routers")
                assert not (local or absolute), f"{path.name} imports a router ({ast.unparse(node)})"
