"""End-to-end: a user in a real headless chromium annotates, segments, explores attention and starts and
cancels a fine-tune job, against the real service (uvicorn subprocess, SQLite, temp data directory).

Every UI step is checked through the REST API too (labels saved with the right classes in the right
places, areas summing to the image, the job cancelled), so a page that merely renders cannot pass.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from .conftest import REPO, Server
from .pages import (
    choose_brush,
    click_image,
    close_toasts,
    count_uploads_from_now,
    css,
    draw,
    image_src,
    open_tab,
    open_ui,
    pick_option,
    screenshot,
    scroll_to,
    text_of,
    toasts,
    type_into,
    uploads_counted,
    wait,
    wait_idle,
)

W, H = 320, 240
BOX = (90, 60, 230, 180)  # the bright object: x0, y0, x1, y1
DOCS = REPO / "docs" / "screenshots" if os.environ.get("SASFORMER_UPDATE_SCREENSHOTS") == "1" else None


def scene(path: Path, gray: bool = False) -> Path:
    """A dark background with a bright rectangle and mild noise (what the strokes below label)."""
    rng = np.random.default_rng(0)
    a = np.full((H, W, 3), (40, 60, 90), np.float32)
    a[BOX[1]:BOX[3], BOX[0]:BOX[2]] = (210, 180, 60)
    a = np.clip(a + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8)
    Image.fromarray(a[..., 0] if gray else a).save(path)
    return path


def label_of(api: httpx.Client, image_id: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(api.get(f"/images/{image_id}/annotation/png").content)))


def test_annotate_segment_attention_finetune(server: Server, driver: WebDriver, artifacts: Path,
                                             tmp_path: Path) -> None:
    api = httpx.Client(base_url=server.url, timeout=60)
    open_ui(driver, server.url)

    # --- create a project with two classes ----------------------------------------------------------
    css(driver, "#new-project button").click()
    type_into(driver, "new-project-name", "e2e demo")
    type_into(driver, "new-project-classes", "background #0000ff\nobject #ff0000")
    seed = wait(driver, lambda: css(driver, "#seed-select input").get_attribute("value"), 30, "the seed choice")
    assert "Random weights" in seed and "no seed model" in seed, seed  # no seed model on this server: said plainly
    css(driver, "#create-project button, button#create-project").click()
    wait(driver, lambda: "Created project" in text_of(driver, "status"), 60, "the project to be created")
    project = next(p for p in api.get("/projects").json()["items"] if p["name"] == "e2e demo")
    assert [c["color"] for c in project["classes"]] == ["#0000ff", "#ff0000"]

    # --- upload an image --------------------------------------------------------------------------
    css(driver, "#upload-files input[type=file]").send_keys(str(scene(tmp_path / "scene.png")))
    wait(driver, lambda: "scene" in text_of(driver, "upload-files"), 30, "the file to be attached")
    css(driver, "button#upload-btn").click()
    wait(driver, lambda: "Uploaded 1 image" in text_of(driver, "status"), 60, "the upload")
    wait(driver, lambda: "scene.png" in text_of(driver, "image-info"), 60, "the image to open in the editor")
    wait(driver, lambda: css(driver, "#editor .zoom-number span").text.endswith("%"), 30, "the editor canvas")
    wait_idle(driver)
    assert "unlabeled" in text_of(driver, "image-gallery")
    image_id = api.get(f"/projects/{project['id']}/images").json()["items"][0]["id"]

    # --- scribble two classes with the brush and save ------------------------------------------------
    scroll_to(driver, "editor")
    choose_brush(driver, 1)  # object (red)
    draw(driver, (W, H), [(120, 120), (160, 110), (200, 125)])
    choose_brush(driver, 0)  # background (blue)
    draw(driver, (W, H), [(30, 40), (35, 120), (30, 200)])
    screenshot(driver, artifacts, "01-annotate", DOCS)
    count_uploads_from_now(driver)
    css(driver, "button#save-btn").click()
    wait(driver, lambda: "Saved revision 1" in text_of(driver, "save-info"), 60, "the save")
    label = label_of(api, image_id)
    assert set(np.unique(label)) <= {0, 1, 255}, "stroke colours must snap to class ids"
    ys, xs = np.nonzero(label == 1)
    assert len(xs) > 50 and xs.min() >= BOX[0] and xs.max() < BOX[2] and ys.min() >= BOX[1] and ys.max() < BOX[3]
    ys, xs = np.nonzero(label == 0)
    assert len(xs) > 50 and xs.max() < BOX[0], "the background stroke lies left of the object"
    wait(driver, lambda: "✓" in text_of(driver, "image-gallery"), 60, "the gallery to mark the image labelled")
    assert "labeled" in text_of(driver, "image-gallery")

    # --- the save refreshed the mask beside the editor by itself, from the live head --------------------
    wait(driver, lambda: "Live mask" in text_of(driver, "live-info"), 120, "the live mask after the save")
    assert "labels of 1 image" in text_of(driver, "live-info")
    wait(driver, lambda: image_src(driver, "live-overlay"), 30, "the live mask beside the editor")
    wait_idle(driver, ignore=("editor",))
    # the save exported the editor once (background, label layer, composite), and no later event does: Gradio
    # 6.31 re-exports it on every status change of any event unless webui/gradio_fixes.py is served
    assert uploads_counted(driver) == 3, uploads_counted(driver)
    count_uploads_from_now(driver)
    # --- segment tab: the same live mask; the model's own on request -----------------------------------
    open_tab(driver, "Segment")
    wait(driver, lambda: "Live mask" in text_of(driver, "seg-info"), 120, "the live mask on the Segment tab")
    wait(driver, lambda: image_src(driver, "overlay"), 30, "the live overlay")
    live = api.post("/segment", data={"image_id": image_id, "live": "true", "format": "png"})
    assert live.headers["X-Mask-Source"] == "live" and live.headers["X-Live-Images"] == "1"
    found = np.asarray(Image.open(io.BytesIO(live.content))) == 1
    box = np.zeros_like(found)
    box[BOX[1]:BOX[3], BOX[0]:BOX[2]] = True
    assert (found & box).sum() / (found | box).sum() > 0.8, "the live mask finds the scribbled object"
    css(driver, "#live-mode input").click()  # off: the model version's own decoder
    css(driver, "button#segment-btn").click()
    wait(driver, lambda: "Model version" in text_of(driver, "seg-info"), 120, "the model's segmentation")
    css(driver, "button#segment-btn").click()
    wait(driver, lambda: "cached prediction" in text_of(driver, "seg-info"), 120, "the segmentation")
    wait(driver, lambda: image_src(driver, "overlay"), 30, "the overlay image")
    legend = text_of(driver, "seg-legend")
    areas = [int(a.replace(",", "")) for a in re.findall(r"([\d,]+) px", legend)]
    assert len(areas) == 2 and sum(areas) == W * H, legend
    wait_idle(driver)
    assert uploads_counted(driver) == 0, "segmenting must not export the image editor"
    screenshot(driver, artifacts, "02-segment", DOCS)

    # --- uncertainty ----------------------------------------------------------------------------------
    for b in driver.find_elements(By.CSS_SELECTOR, "button.label-wrap"):
        if "Uncertainty" in b.text:
            b.click()
    css(driver, "button#uncertainty-btn").click()
    wait(driver, lambda: "Mean entropy" in driver.find_element(By.TAG_NAME, "body").text, 120, "the entropy map")
    wait(driver, lambda: image_src(driver, "uncertainty"), 30, "the entropy image")
    scroll_to(driver, "uncertainty")
    screenshot(driver, artifacts, "03-uncertainty", DOCS)

    # --- attention: click a pixel, get stage 1-4 + mean heatmaps and the propagated labels ---------------
    open_tab(driver, "Attention")
    wait(driver, lambda: image_src(driver, "attention-source"), 30, "the clickable image")
    click_image(driver, "attention-source", (W, H), (160, 120))
    wait(driver, lambda: "Query pixel" in text_of(driver, "attention-info"), 180, "the attention maps")
    info = text_of(driver, "attention-info")
    x, y = map(int, re.search(r"\((\d+), (\d+)\)", info).groups())  # type: ignore[union-attr]
    assert abs(x - 160) <= 3 and abs(y - 120) <= 3, info
    thumbs = driver.find_elements(By.CSS_SELECTOR, "#attention-maps img")
    assert len(thumbs) >= 6, f"expected 6 maps, got {len(thumbs)}"
    assert "stage 1" in text_of(driver, "attention-maps") and "propagated" in text_of(driver, "attention-maps")
    screenshot(driver, artifacts, "04-attention", DOCS)

    # --- fine-tune: start a job, see it queued/running, cancel it ------------------------------------------
    open_tab(driver, "Fine-tune & versions")
    type_into(driver, "ft-steps", "20")
    css(driver, "button#start-job").click()
    wait(driver, lambda: re.search(r"Job \d+: (queued|running)", text_of(driver, "job-status")), 60, "the job")
    job_id = int(re.search(r"Job (\d+)", text_of(driver, "job-status")).group(1))  # type: ignore[union-attr]
    assert api.get(f"/jobs/{job_id}").json()["params"]["steps"] == 20
    assert "v1" in text_of(driver, "versions") or "1" in text_of(driver, "versions")
    screenshot(driver, artifacts, "05-finetune", DOCS)
    css(driver, "button#cancel-job").click()
    wait(driver, lambda: f"Job {job_id}: cancel" in text_of(driver, "job-status"), 60, "the cancellation")
    state = wait(driver, lambda: api.get(f"/jobs/{job_id}").json()["state"] in ("cancelled",)
                 or api.get(f"/jobs/{job_id}").json()["cancel_requested"], 60, "the job to be cancelled")
    assert state
    assert not toasts(driver), toasts(driver)

    # --- opening another image shows its live mask at once (the head of the labels so far), no click -----
    # (last: opening an image after drawing on another at times leaves Gradio's ImageEditor loading forever in
    # headless software-WebGL chromium, docs/PERFORMANCE.md; nothing below waits for the editor)
    open_tab(driver, "Segment")
    css(driver, "#live-mode input").click()  # live masks on again (switched off above for the model's mask)
    open_tab(driver, "Annotate")
    first_mask = image_src(driver, "live-overlay")
    second = tmp_path / "scene-2.png"  # the scene mirrored: another image, another mask
    Image.open(scene(tmp_path / "mirror.png")).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(second)
    css(driver, "#upload-files input[type=file]").send_keys(str(second))
    css(driver, "button#upload-btn").click()
    wait(driver, lambda: "Uploaded 1 image" in text_of(driver, "status"), 60, "the second upload")
    assert "scene.png" in text_of(driver, "image-info"), "an upload must not switch away from the open image"
    pick_option(driver, "image-select", "scene-2.png")
    wait(driver, lambda: "scene-2.png" in text_of(driver, "image-info"), 60, "the second image to open")
    wait(driver, lambda: image_src(driver, "live-overlay") not in ("", first_mask), 120,
         "the second image's live mask")
    assert "Live mask" in text_of(driver, "live-info") and "labels of 1 image" in text_of(driver, "live-info")


def test_points_conflict_errors_export(server: Server, driver: WebDriver, artifacts: Path, tmp_path: Path) -> None:
    """Clicks as labels, a concurrent edit reported (not overwritten), readable errors, and an export."""
    api = httpx.Client(base_url=server.url, timeout=60)
    p = api.post("/projects", json={"name": "e2e points", "classes": [{"name": "bg", "color": "#00ff00"},
                                                                       {"name": "thing", "color": "#ff00ff"}]}).json()
    with open(scene(tmp_path / "gray.png", gray=True), "rb") as f:
        img = api.post(f"/projects/{p['id']}/images", files={"file": ("gray.png", f.read())}).json()
    open_ui(driver, server.url)
    pick_option(driver, "project-select", "e2e points")
    wait(driver, lambda: "gray.png" in text_of(driver, "image-info"), 60, "the gray image to open")
    wait_idle(driver)

    # two clicks of different classes on the points image, one undone, then saved
    for lab in driver.find_elements(By.CSS_SELECTOR, "#point-class label"):
        if "thing" in lab.text:
            lab.click()
    scroll_to(driver, "points-image")
    wait(driver, lambda: image_src(driver, "points-image"), 60, "the points image")
    wait_idle(driver)
    click_image(driver, "points-image", (W, H), (160, 120))
    wait(driver, lambda: "1 point(s) pending" in text_of(driver, "save-info"), 60, "the first point")
    click_image(driver, "points-image", (W, H), (20, 20))
    wait(driver, lambda: "2 point(s) pending" in text_of(driver, "save-info"), 60, "the second point")
    css(driver, "button#undo-point").click()
    wait(driver, lambda: "1 point(s) pending" in text_of(driver, "save-info"), 30, "the undo")
    css(driver, "button#save-btn").click()
    wait(driver, lambda: "Saved revision 1" in text_of(driver, "save-info"), 60, "the save of the point")
    label = label_of(api, img["id"])
    ys, xs = np.nonzero(label == 1)
    assert len(xs) > 0 and abs(xs.mean() - 160) <= 4 and abs(ys.mean() - 120) <= 4
    assert (label == 0).sum() == 0, "the undone point must not be saved"

    # someone else saves meanwhile: the UI's save is refused with a readable message, nothing overwritten
    etag = api.get(f"/images/{img['id']}/annotation").headers["ETag"]
    r = api.patch(f"/images/{img['id']}/annotation", headers={"If-Match": etag},
                  json={"points": [{"x": 10, "y": 10, "class_id": 0, "radius": 2}]})
    assert r.status_code == 200, r.text
    click_image(driver, "points-image", (W, H), (200, 100))
    wait(driver, lambda: "1 point(s) pending" in text_of(driver, "save-info"), 60, "a new point")
    css(driver, "button#save-btn").click()
    msg = wait(driver, lambda: [t for t in toasts(driver) if "NOT applied" in t], 60, "the conflict message",
               errors_ok=True)
    assert "Traceback" not in msg[0]
    scroll_to(driver, "save-btn")
    screenshot(driver, artifacts, "06-conflict", DOCS)
    assert api.get(f"/images/{img['id']}/annotation").json()["revision"] == 2
    close_toasts(driver)
    css(driver, "button#reload-btn").click()
    wait(driver, lambda: "revision 2" in text_of(driver, "image-info"), 60, "the reload")

    # a backend error (duplicate project name) reads as a sentence in the page
    css(driver, "#new-project button").click()
    type_into(driver, "new-project-name", "e2e points")
    css(driver, "button#create-project").click()
    msg = wait(driver, lambda: [t for t in toasts(driver) if "e2e points" in t or "exists" in t], 60, "the error",
               errors_ok=True)
    assert "Traceback" not in msg[0] and "HTTP 409" in msg[0], msg
    close_toasts(driver)

    # export the labels (PNG + history)
    open_tab(driver, "Export")
    css(driver, "button#export-labels").click()
    wait(driver, lambda: ".zip" in text_of(driver, "export-file"), 60, "the export file")
    screenshot(driver, artifacts, "07-export", DOCS)


@pytest.mark.parametrize("path", ["/ui/", "/health", "/openapi.json"])
def test_one_process_serves_ui_and_api(server: Server, path: str) -> None:
    """The UI is mounted into the API process: one port answers both, and the UI's mount does not leak
    into the API schema."""
    r = httpx.get(server.url + path, timeout=30)
    assert r.status_code == 200
    if path == "/openapi.json":
        assert not [p for p in r.json()["paths"] if p.startswith("/ui")]
