"""Images: upload formats and bit depths, limits, list/paging, original, thumbnail, delete."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from .conftest import AppFactory, make_project, png_bytes, random_image, upload_image


@pytest.fixture(scope="module")
def project(client: TestClient) -> dict:
    return make_project(client)


@pytest.mark.parametrize("kind", ["png_rgb", "png_gray", "png_gray16", "jpeg", "tiff_rgb", "tiff_gray16", "rgba"])
def test_upload_formats(client: TestClient, project: dict, kind: str) -> None:
    rng = np.random.default_rng(hash(kind) % 1000)
    if kind == "png_gray16" or kind == "tiff_gray16":
        arr = rng.integers(0, 65535, (40, 50), dtype=np.uint16)
        im = Image.fromarray(arr)
    elif kind == "png_gray":
        im = Image.fromarray(rng.integers(0, 255, (40, 50), dtype=np.uint8))
    elif kind == "rgba":
        im = Image.fromarray(rng.integers(0, 255, (40, 50, 4), dtype=np.uint8))
    else:
        im = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    fmt = {"jpeg": "JPEG", "tiff_rgb": "TIFF", "tiff_gray16": "TIFF"}.get(kind, "PNG")
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    r = client.post(f"/projects/{project['id']}/images", files={"file": (f"{kind}.img", buf.getvalue())})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["format"] == fmt and (body["width"], body["height"]) == (50, 40)
    # the original comes back byte for byte; segment works on every kind
    assert client.get(f"/images/{body['id']}/file").content == buf.getvalue()
    seg = client.post("/segment", data={"image_id": body["id"]})
    assert seg.status_code == 200 and (seg.json()["width"], seg.json()["height"]) == (50, 40)


def test_list_get_thumbnail_delete(client: TestClient) -> None:
    p = make_project(client)
    ids = [upload_image(client, p["id"], random_image(60, 90, seed=s))["id"] for s in range(3)]
    page = client.get(f"/projects/{p['id']}/images", params={"offset": 1, "limit": 1}).json()
    assert page["total"] == 3 and [i["id"] for i in page["items"]] == ids[1:2]
    assert client.get(f"/images/{ids[0]}").json()["annotation_revision"] is None
    t = client.get(f"/images/{ids[0]}/thumbnail", params={"size": 32})
    assert t.status_code == 200 and t.headers["content-type"] == "image/png"
    assert max(Image.open(io.BytesIO(t.content)).size) == 32
    assert client.get(f"/images/{ids[0]}/thumbnail", params={"size": 4}).status_code == 422
    assert client.get(f"/projects/{p['id']}").json()["image_count"] == 3
    assert client.delete(f"/images/{ids[0]}").status_code == 204
    assert client.get(f"/images/{ids[0]}").status_code == 404
    assert client.get(f"/images/{ids[0]}/file").status_code == 404
    assert client.delete(f"/images/{ids[0]}").status_code == 404


def test_duplicate_upload_is_409(client: TestClient, project: dict) -> None:
    arr = random_image(seed=77)
    first = upload_image(client, project["id"], arr)
    r = client.post(f"/projects/{project['id']}/images", files={"file": ("again.png", png_bytes(arr))})
    assert r.status_code == 409 and str(first["id"]) in r.json()["detail"]
    # the same file in another project is fine (stored once on disk)
    other = make_project(client)
    assert upload_image(client, other["id"], arr)["sha256"] == first["sha256"]


def test_unknown_ids_are_404(client: TestClient) -> None:
    r = client.post("/projects/999999/images", files={"file": ("a.png", png_bytes(random_image()))})
    assert r.status_code == 404
    for url in ["/images/999999", "/images/999999/file", "/images/999999/thumbnail", "/projects/999999/images"]:
        assert client.get(url).status_code == 404, url


@pytest.mark.parametrize("data,code", [
    (b"", 422), (b"hello, not an image", 415), (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 415),
])
def test_bad_uploads(client: TestClient, project: dict, data: bytes, code: int) -> None:
    r = client.post(f"/projects/{project['id']}/images", files={"file": ("x.png", data)})
    assert r.status_code == code, r.text
    assert isinstance(r.json()["detail"], str)


def test_truncated_and_unsupported_formats(client: TestClient, project: dict) -> None:
    good = png_bytes(random_image(64, 64, seed=5))
    r = client.post(f"/projects/{project['id']}/images", files={"file": ("t.png", good[: len(good) // 2])})
    assert r.status_code == 415
    buf = io.BytesIO()
    Image.fromarray(random_image(seed=6)).save(buf, format="BMP")
    r = client.post(f"/projects/{project['id']}/images", files={"file": ("b.bmp", buf.getvalue())})
    assert r.status_code == 415 and "BMP" in r.json()["detail"]


@pytest.mark.parametrize("name", ["../evil.png", "a/b.png", ".."])
def test_path_like_filenames_are_422(client: TestClient, project: dict, name: str) -> None:
    r = client.post(f"/projects/{project['id']}/images", files={"file": (name, png_bytes(random_image(seed=9)))})
    assert r.status_code == 422, r.text


def test_missing_file_field_is_422(client: TestClient, project: dict) -> None:
    assert client.post(f"/projects/{project['id']}/images").status_code == 422


def test_size_and_pixel_limits(apps: AppFactory) -> None:
    c = apps.client(max_upload_bytes=20_000, max_image_pixels=4096)
    p = make_project(c)
    big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)  # ~120 kB as PNG
    r = c.post(f"/projects/{p['id']}/images", files={"file": ("big.png", png_bytes(big))})
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # small file, many pixels: refused from the header, before decoding (a decompression bomb)
    bomb = png_bytes(np.zeros((1000, 1000), np.uint8))
    assert len(bomb) < 20_000
    r = c.post(f"/projects/{p['id']}/images", files={"file": ("bomb.png", bomb)})
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
    # the same limits hold on /segment uploads
    r = c.post("/segment", data={"project_id": p["id"]}, files={"file": ("bomb.png", bomb)})
    assert r.status_code == 413
