"""Live mode: ``POST /segment`` with ``live`` answers from the project's head, refitted on every save.

Generated scenes (a bright textured disc on a darker, differently textured background) make the answer
checkable: two strokes on one image must give a good mask of another image at once, a second save must
change what the head knows, and saves racing live requests must never give a 5xx.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from backend.app import create_app
from backend.services.encoding import rle_decode

from .conftest import AppFactory, make_project, upload_image


def scene(seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """RGB image and its dense truth: class 1 = a bright, smooth disc; class 0 = darker, noisier ground."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = rng.integers(30, size - 30, 2)
    disc = np.hypot(yy - cy, xx - cx) < rng.integers(14, 22)
    img = rng.normal(70, 25, (size, size))
    img[disc] = rng.normal(190, 6, int(disc.sum()))
    rgb = np.repeat(img.clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return rgb, disc.astype(np.uint8)


def strokes_for(truth: np.ndarray) -> dict:
    """A stroke through the disc's centre (class 1) and a background stroke around the image (class 0),
    as an annotator draws them."""
    ys, xs = np.nonzero(truth)
    cy, cx = int(ys.mean()), int(xs.mean())
    h, w = truth.shape
    ring = [[4, 4], [w - 5, 4], [w - 5, h - 5], [4, h - 5], [4, 4]]
    return {"strokes": [{"class_id": 1, "width": 3, "points": [[cx - 6, cy], [cx + 6, cy]]},
                        {"class_id": 0, "width": 3, "points": ring}]}


def live_mask(c: TestClient, image_id: int) -> tuple[np.ndarray, dict]:
    r = c.post("/segment", data={"image_id": image_id, "live": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    out = np.zeros((body["height"], body["width"]), np.uint8)
    for m in body["masks"]:
        out[rle_decode(m["rle"])] = m["class_id"]
    return out, body


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def live_client(apps: AppFactory) -> TestClient:
    return apps.client()


def test_live_mask_from_two_strokes_and_the_next_save(live_client: TestClient) -> None:
    c = live_client
    p = make_project(c, classes=2)
    scenes = [scene(s) for s in range(3)]
    ids = [upload_image(c, p["id"], rgb, name=f"s{i}.png")["id"] for i, (rgb, _) in enumerate(scenes)]
    before, body = live_mask(c, ids[1])  # no labels yet: the model's mask, and the reason
    assert body["source"] == "model" and "no labelled pixel" in body["note"]
    assert c.put(f"/images/{ids[0]}/annotation", json=strokes_for(scenes[0][1])).status_code == 200
    mask, body = live_mask(c, ids[1])  # an image nobody labelled
    assert body["source"] == "live" and body["live"]["labelled_images"] == 1 and body["model_version"] == 1
    assert iou(mask.astype(bool), scenes[1][1].astype(bool)) > 0.8
    assert c.put(f"/images/{ids[2]}/annotation", json=strokes_for(scenes[2][1])).status_code == 200
    _, body = live_mask(c, ids[1])
    assert body["live"]["labelled_images"] == 2  # the second save is in the head it answers with
    png = c.post("/segment", data={"image_id": ids[1], "live": "true", "format": "png"})
    assert png.headers["X-Mask-Source"] == "live" and png.headers["X-Live-Images"] == "2"
    assert (np.asarray(Image.open(io.BytesIO(png.content))) == mask).mean() > 0.95
    up = c.post("/segment", data={"project_id": p["id"], "live": "true"},
                files={"file": ("new.png", _png(scene(7)[0]), "image/png")})
    assert up.status_code == 200 and up.json()["source"] == "live"
    for bad in ({"version": "1"}, {"flip": "true"}, {"scales": "1,1.5"}):
        r = c.post("/segment", data={"image_id": ids[1], "live": "true", **bad})
        assert r.status_code == 422 and "live" in r.json()["detail"]


def test_saves_racing_live_requests_never_fail(live_client: TestClient) -> None:
    c = live_client
    p = make_project(c, classes=2)
    scenes = [scene(10 + s, size=64) for s in range(3)]
    ids = [upload_image(c, p["id"], rgb, name=f"r{i}.png")["id"] for i, (rgb, _) in enumerate(scenes)]
    assert c.put(f"/images/{ids[0]}/annotation", json=strokes_for(scenes[0][1])).status_code == 200
    statuses: list[int] = []

    def saver() -> None:
        etag = None
        for k in range(6):
            i = 1 + k % 2
            body = strokes_for(scenes[i][1])
            headers = {"If-Match": "*"} if k >= 2 else {}
            r = c.put(f"/images/{ids[i]}/annotation", json=body, headers=headers)
            statuses.append(r.status_code)
            etag = r.headers.get("ETag", etag)

    def segmenter() -> None:
        for k in range(6):
            r = c.post("/segment", data={"image_id": ids[k % 3], "live": "true", "format": "png"})
            statuses.append(r.status_code)

    threads = [threading.Thread(target=saver), threading.Thread(target=segmenter), threading.Thread(target=segmenter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert statuses and all(s == 200 for s in statuses), statuses
    _, body = live_mask(c, ids[0])
    assert body["live"]["labelled_images"] == 3


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_a_restart_reads_the_stored_rows_instead_of_featurising(apps: AppFactory) -> None:
    """The service after a restart (a new app on the same home and database) answers its first live mask
    from the rows stored by the first one, with the same mask; deleting the project removes them."""
    settings = apps.settings()
    first = TestClient(create_app(settings), raise_server_exceptions=False)
    apps.clients.append(first)
    p = make_project(first, classes=2)
    scenes = [scene(s) for s in range(3)]
    ids = [upload_image(first, p["id"], rgb, name=f"r{i}.png")["id"] for i, (rgb, _) in enumerate(scenes)]
    for i in (0, 2):
        assert first.put(f"/images/{ids[i]}/annotation", json=strokes_for(scenes[i][1])).status_code == 200
    mask, body = live_mask(first, ids[1])
    assert body["live"]["labelled_images"] == 2
    assert len(list(settings.live_rows_dir.glob("*.npz"))) == 2

    restarted = TestClient(create_app(settings), raise_server_exceptions=False)
    apps.clients.append(restarted)
    again, body = live_mask(restarted, ids[1])
    assert body["live"]["labelled_images"] == 2
    assert restarted.app.state.ctx.live._projects[p["id"]].segmenter.rows_loaded == 2  # type: ignore[attr-defined]
    assert (again == mask).mean() > 0.99
    assert restarted.delete(f"/projects/{p['id']}").status_code == 204
    assert not list(settings.live_rows_dir.glob("*.npz"))
