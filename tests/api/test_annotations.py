"""Sparse annotations: strokes, points, label PNGs, revisions, ETag / If-Match, validation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from .conftest import annotate, make_project, png_bytes, random_image, upload_image


@pytest.fixture
def image(client: TestClient) -> dict:
    p = make_project(client, classes=3)
    return upload_image(client, p["id"], random_image(48, 64))


def label_of(client: TestClient, image_id: int, revision: int | None = None) -> np.ndarray:
    url = f"/images/{image_id}/annotation/png" if revision is None else \
        f"/images/{image_id}/annotation/revisions/{revision}/png"
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def test_no_annotation_yet_is_404(client: TestClient, image: dict) -> None:
    r = client.get(f"/images/{image['id']}/annotation")
    assert r.status_code == 404 and "no annotation" in r.json()["detail"]
    assert client.get(f"/images/{image['id']}/annotation/png").status_code == 404
    assert client.get(f"/images/{image['id']}/annotation/revisions").json() == []


def test_strokes_and_points_rasterise(client: TestClient, image: dict) -> None:
    r = client.put(f"/images/{image['id']}/annotation", headers={"X-User": "alice"}, json={
        "strokes": [{"class_id": 1, "width": 1, "points": [[0, 5], [10, 5]]}],
        "points": [{"x": 30, "y": 20, "class_id": 2}, {"x": 50, "y": 40, "class_id": 0, "radius": 2}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revision"] == 1 and body["author"] == "alice" and r.headers["etag"] == body["etag"]
    label = label_of(client, image["id"])
    assert label.shape == (48, 64)
    assert (label[5, 0:11] == 1).all() and label[20, 30] == 2 and label[40, 50] == 0 and label[42, 50] == 0
    assert label[0, 0] == 255 and label[30, 10] == 255
    assert body["class_counts"] == {"c0": int((label == 0).sum()), "c1": 11, "c2": 1}
    assert body["labeled_pixels"] == int((label != 255).sum())
    assert body["strokes"][0]["points"] == [[0.0, 5.0], [10.0, 5.0]]
    assert client.get(f"/images/{image['id']}").json()["annotation_revision"] == 1


def test_patch_draws_over_and_erases(client: TestClient, image: dict) -> None:
    etag = annotate(client, image["id"], class_id=1).headers["etag"]
    before = label_of(client, image["id"])
    r = client.patch(f"/images/{image['id']}/annotation", headers={"If-Match": etag},
                     json={"points": [{"x": 40, "y": 40, "class_id": 2}],
                           "strokes": [{"class_id": 255, "width": 1, "points": [[2, 2], [4, 3]]}]})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] == 2 and r.json()["kind"] == "patch"
    after = label_of(client, image["id"])
    assert after[40, 40] == 2 and after[2, 2] == 255 and before[2, 2] == 1
    assert (after[10:, :][before[10:, :] == 1] == 1).all()  # the rest of the stroke stays
    # the old revision is kept
    assert (label_of(client, image["id"], 1) == before).all()
    revs = client.get(f"/images/{image['id']}/annotation/revisions").json()
    assert [x["revision"] for x in revs] == [1, 2] and revs[1]["kind"] == "patch"
    assert client.get(f"/images/{image['id']}/annotation/revisions/1").json()["revision"] == 1
    assert client.get(f"/images/{image['id']}/annotation/revisions/9").status_code == 404
    assert client.get(f"/images/{image['id']}/annotation/revisions/9/png").status_code == 404


def test_patch_without_annotation_starts_empty(client: TestClient, image: dict) -> None:
    r = client.patch(f"/images/{image['id']}/annotation", json={"points": [{"x": 1, "y": 1, "class_id": 0}]})
    assert r.status_code == 200 and r.json()["labeled_pixels"] == 1


def test_etag_if_match_concurrency(client: TestClient, image: dict) -> None:
    url = f"/images/{image['id']}/annotation"
    first = annotate(client, image["id"])
    etag = first.headers["etag"]
    assert client.get(url).headers["etag"] == etag
    # a second editor without If-Match: 428; with a stale ETag: 412 (with the current one in the header)
    r = client.put(url, json={"points": [{"x": 1, "y": 1, "class_id": 0}]})
    assert r.status_code == 428 and etag in r.json()["detail"]
    ok = client.put(url, headers={"If-Match": etag}, json={"points": [{"x": 1, "y": 1, "class_id": 0}]})
    assert ok.status_code == 200 and ok.json()["revision"] == 2
    stale = client.patch(url, headers={"If-Match": etag}, json={"points": [{"x": 2, "y": 2, "class_id": 0}]})
    assert stale.status_code == 412 and stale.headers["etag"] == ok.headers["etag"]
    assert client.get(url).json()["revision"] == 2  # nothing was overwritten
    star = client.patch(url, headers={"If-Match": "*"}, json={"points": [{"x": 2, "y": 2, "class_id": 0}]})
    assert star.status_code == 200 and star.json()["revision"] == 3
    png = client.put(f"{url}/png", files={"file": ("l.png", png_bytes(np.full((48, 64), 255, np.uint8)))})
    assert png.status_code == 428


def test_if_match_star_without_annotation_is_412(client: TestClient, image: dict) -> None:
    r = client.put(f"/images/{image['id']}/annotation", headers={"If-Match": "*"}, json={"points": []})
    assert r.status_code == 412


def test_label_png_roundtrip_and_validation(client: TestClient, image: dict) -> None:
    url = f"/images/{image['id']}/annotation/png"
    label = np.full((48, 64), 255, np.uint8)
    label[10:20, 10:20] = 2
    label[0, 0] = 0
    r = client.put(url, files={"file": ("l.png", png_bytes(label))})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "png" and r.json()["class_counts"] == {"c0": 1, "c1": 0, "c2": 100}
    assert (label_of(client, image["id"]) == label).all()
    etag = r.headers["etag"]
    bad = label.copy()
    bad[5, 5] = 7
    r = client.put(url, headers={"If-Match": etag}, files={"file": ("l.png", png_bytes(bad))})
    assert r.status_code == 422 and "[7]" in r.json()["detail"]
    r = client.put(url, headers={"If-Match": etag}, files={"file": ("l.png", png_bytes(label[:10]))})
    assert r.status_code == 422 and "64x10" in r.json()["detail"]
    rgb = np.zeros((48, 64, 3), np.uint8)
    r = client.put(url, headers={"If-Match": etag}, files={"file": ("l.png", png_bytes(rgb))})
    assert r.status_code == 422 and "mode RGB" in r.json()["detail"]
    r = client.put(url, headers={"If-Match": etag}, files={"file": ("l.jpg", png_bytes(label, "JPEG"))})
    assert r.status_code == 415
    r = client.put(url, headers={"If-Match": etag}, files={"file": ("l.png", b"garbage")})
    assert r.status_code == 415
    assert client.get(f"/images/{image['id']}/annotation").json()["revision"] == 1


@pytest.mark.parametrize("edit,needle", [
    ({"strokes": [{"class_id": 3, "points": [[1, 1]]}]}, "class_id 3 is out of range"),
    ({"points": [{"x": 1, "y": 1, "class_id": 9}]}, "class_id 9 is out of range"),
    ({"strokes": [{"class_id": 1, "points": [[1, 1], [64, 10]]}]}, "outside the image"),
    ({"strokes": [{"class_id": 1, "points": [[-1, 1]]}]}, "outside the image"),
    ({"points": [{"x": 10, "y": 48, "class_id": 0}]}, "outside the image"),
])
def test_out_of_range_edits_are_422(client: TestClient, image: dict, edit: dict, needle: str) -> None:
    r = client.put(f"/images/{image['id']}/annotation", json=edit)
    assert r.status_code == 422 and needle in r.json()["detail"]
    assert client.get(f"/images/{image['id']}/annotation").status_code == 404  # nothing saved


@pytest.mark.parametrize("edit", [
    {"strokes": [{"class_id": 1, "points": []}]},
    {"strokes": [{"class_id": 1, "width": 0, "points": [[1, 1]]}]},
    {"strokes": [{"class_id": 256, "points": [[1, 1]]}]},
    {"points": [{"x": 1, "y": 1, "class_id": -1}]},
    {"points": [{"x": "a", "y": 1, "class_id": 0}]},
])
def test_malformed_edits_are_422(client: TestClient, image: dict, edit: dict) -> None:
    assert client.put(f"/images/{image['id']}/annotation", json=edit).status_code == 422


def test_unknown_image_is_404(client: TestClient) -> None:
    assert client.get("/images/999999/annotation").status_code == 404
    assert client.put("/images/999999/annotation", json={"points": []}).status_code == 404
    assert client.patch("/images/999999/annotation", json={"points": []}).status_code == 404
    assert client.get("/images/999999/annotation/revisions").status_code == 404


def test_labeled_count_on_project(client: TestClient) -> None:
    p = make_project(client)
    a = upload_image(client, p["id"], random_image(seed=101))
    upload_image(client, p["id"], random_image(seed=102))
    annotate(client, a["id"])
    assert client.get(f"/projects/{p['id']}").json()["labeled_image_count"] == 1
