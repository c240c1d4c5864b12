"""Exports: predicted masks (PNG zip), COCO JSON with RLE (predictions or labels), labels with provenance."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.services.encoding import rle_decode

from .conftest import annotate, make_project, random_image, upload_image


@pytest.fixture(scope="module")
def project(client: TestClient) -> dict:
    p = make_project(client, classes=3)
    a = upload_image(client, p["id"], random_image(32, 40, seed=21), name="a.png")
    upload_image(client, p["id"], random_image(24, 24, seed=22), name="b.png")
    etag = annotate(client, a["id"], class_id=2).headers["etag"]
    r = client.patch(f"/images/{a['id']}/annotation", headers={"If-Match": etag, "X-User": "bob"},
                     json={"points": [{"x": 30, "y": 20, "class_id": 0}]})
    assert r.status_code == 200
    return {**p, "a": a}


def test_masks_zip(client: TestClient, project: dict) -> None:
    r = client.get(f"/projects/{project['id']}/export/masks.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["model_version"] == 1 and len(manifest["images"]) == 2
    first = manifest["images"][0]
    mask = np.asarray(Image.open(io.BytesIO(zf.read(first["mask"]))))
    assert mask.shape == (32, 40) and mask.max() < 3
    seg = client.post("/segment", data={"image_id": first["image_id"], "format": "png"})
    assert (np.asarray(Image.open(io.BytesIO(seg.content))) == mask).all()


def test_coco_predictions(client: TestClient, project: dict) -> None:
    coco = client.get(f"/projects/{project['id']}/export/coco.json").json()
    assert [c["id"] for c in coco["categories"]] == [1, 2, 3]
    assert {i["file_name"] for i in coco["images"]} == {"a.png", "b.png"}
    by_image: dict[int, int] = {}
    for ann in coco["annotations"]:
        m = rle_decode(ann["segmentation"])
        assert int(m.sum()) == ann["area"] and 1 <= ann["category_id"] <= 3
        by_image[ann["image_id"]] = by_image.get(ann["image_id"], 0) + ann["area"]
    sizes = {i["id"]: i["width"] * i["height"] for i in coco["images"]}
    assert by_image == sizes  # dense masks: class areas add up to the image


def test_coco_labels(client: TestClient, project: dict) -> None:
    coco = client.get(f"/projects/{project['id']}/export/coco.json", params={"source": "labels"}).json()
    assert [i["id"] for i in coco["images"]] == [project["a"]["id"]]
    cats = {a["category_id"] for a in coco["annotations"]}
    assert cats == {1, 3}  # class 0 (point) and class 2 (stroke)
    assert coco["info"]["model_version"] is None


def test_labels_zip_has_provenance(client: TestClient, project: dict) -> None:
    r = client.get(f"/projects/{project['id']}/export/labels.zip")
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    meta = json.loads(zf.read("labels.json"))
    assert meta["unlabeled_value"] == 255 and len(meta["images"]) == 1
    rec = meta["images"][0]
    assert rec["revision"] == 2 and [x["author"] for x in rec["revisions"]] == ["anonymous", "bob"]
    assert rec["revisions"][1]["points"][0]["class_id"] == 0
    label = np.asarray(Image.open(io.BytesIO(zf.read(rec["label"]))))
    assert label[20, 30] == 0 and (label == 2).any() and (label == 255).any()


def test_errors(client: TestClient, project: dict) -> None:
    for url in ["/projects/999999/export/masks.zip", "/projects/999999/export/coco.json",
                "/projects/999999/export/labels.zip"]:
        assert client.get(url).status_code == 404
    assert client.get(f"/projects/{project['id']}/export/masks.zip", params={"version": 5}).status_code == 404
    assert client.get(f"/projects/{project['id']}/export/coco.json", params={"source": "x"}).status_code == 422
