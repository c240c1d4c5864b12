"""Annotate tab: upload and browse images, brush scribbles per class, click points, save revisions.

Brush strokes are drawn in Gradio's ImageEditor on one "labels" layer whose brush colours are fixed to
the class palette; the saved label is that layer snapped to the nearest class colour (anti-aliased edges
and blends never become a wrong class), plus the pending clicks burnt in as small disks. A save is one
``PUT /images/{id}/annotation/png`` with ``If-Match``, so a concurrent edit is reported, never overwritten.
"""

import io
import os
import threading
from collections import OrderedDict
from typing import Any

import gradio as gr
import numpy as np
from gradio.components.image_editor import EditorValue
from PIL import Image

from ..client import StudioClient
from ..imaging import (
    UNLABELED,
    class_overlay,
    decode_class_map,
    decode_rgb,
    editor_label,
    encode_label_png,
    label_to_layer,
    legend_html,
    mark_points,
    paint_points,
    palette,
)
from .common import Shared, need_image, need_project, progress_without, ui_errors

HELP = """**Brush:** pick a class colour in the editor's brush menu (the colours are the classes in the legend), set
the size with the brush's slider, draw. **Eraser** removes label. **Undo / redo** are the editor's arrows (its
history lasts until you save or switch image). **Points:** choose a class and radius below, click on the
*Points* image; *Undo last point* removes the newest. **Save** writes a new revision of the label
(strokes + points); if someone else saved meanwhile you get a conflict message and nothing is overwritten."""


def _image_label(img: dict[str, Any]) -> str:
    rev = img.get("annotation_revision")
    state = f"labeled (rev {rev})" if rev else "unlabeled"
    return f"#{img['id']} {img['filename']} · {img['width']}x{img['height']} · {state}"


class ThumbnailCache:
    """Gallery thumbnails by image content (``sha256``): an image's pixels never change after upload, so the
    list refreshed after every save fetches and decodes only new images, not every thumbnail again."""

    def __init__(self, max_items: int = 2048) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[str, int], Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, client: StudioClient, image: dict[str, Any], size: int = 160) -> Image.Image:
        key = (image["sha256"], size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        thumb = Image.open(io.BytesIO(client.thumbnail(image["id"], size)))
        thumb.load()
        with self._lock:
            self._items[key] = thumb
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return thumb


THUMBNAILS = ThumbnailCache()


def image_choices(client: StudioClient, project_id: int) -> tuple[list[tuple[str, int]], list[tuple[Any, str]]]:
    """Dropdown choices and gallery items (thumbnail, caption) of a project's images."""
    items = client.images(project_id)
    choices = [(_image_label(i), i["id"]) for i in items]
    gallery = []
    for i in items[:200]:
        thumb = THUMBNAILS.get(client, i)
        mark = "✓ labeled" if i.get("annotation_revision") else "○ unlabeled"
        gallery.append((thumb, f"#{i['id']} {i['filename']} — {mark}"))
    return choices, gallery


def editor_value(rgb: np.ndarray, label: np.ndarray | None, colors: list[tuple[int, int, int]]) -> EditorValue:
    layer = label_to_layer(label if label is not None else np.full(rgb.shape[:2], UNLABELED, np.uint8), colors)
    return {"background": rgb, "layers": [layer], "composite": None}


def points_view(img: dict[str, Any], project: dict[str, Any], points: list[dict[str, Any]]) -> np.ndarray:
    colors = palette(project["classes"])
    base = class_overlay(img["rgb"], img["label"], colors, 0.5) if img.get("label") is not None else img["rgb"]
    return mark_points(base, points, colors)


def load_image(client: StudioClient, project: dict[str, Any], image_id: int) -> dict[str, Any]:
    """Image state: full-resolution RGB as the model sees it, the current label and its ETag."""
    meta = client.image(image_id)
    rgb = decode_rgb(client.image_file(image_id))
    ann = client.annotation(image_id)
    label = decode_class_map(client.annotation_png(image_id)) if ann else None
    return {"id": image_id, "filename": meta["filename"], "width": meta["width"], "height": meta["height"],
            "rgb": rgb, "label": label, "etag": ann["etag"] if ann else None,
            "revision": ann["revision"] if ann else None}


def revision_md(img: dict[str, Any]) -> str:
    rev = f"revision {img['revision']}" if img.get("revision") else "no labels yet"
    return f"**{img['filename']}** (#{img['id']}, {img['width']}x{img['height']} px) — {rev}"


def build(ui: Shared) -> None:
    """The Annotate tab; registers ``editor`` etc. in ``ui.extra`` for the other panels."""
    with gr.Tab("Annotate", id="tab-annotate"):
        with gr.Row():
            with gr.Column(scale=1, min_width=280):
                files = gr.File(label="Upload images (PNG / JPEG / TIFF, one or many)", file_count="multiple",
                                file_types=["image", ".tif", ".tiff"], elem_id="upload-files")
                upload_btn = gr.Button("Upload", elem_id="upload-btn")
                gallery = gr.Gallery(label="Images (click to open)", columns=3, height=360, allow_preview=False,
                                     elem_id="image-gallery")
                legend = gr.HTML(elem_id="class-legend")
            with gr.Column(scale=3):
                info = gr.Markdown("Pick an image.", elem_id="image-info")
                editor = gr.ImageEditor(
                    label="Scribbles (brush per class, eraser, undo/redo)", type="numpy", image_mode="RGBA",
                    sources=(), transforms=(), format="png", layers=gr.LayerOptions(
                        allow_additional_layers=False, layers=["labels"]),
                    brush=gr.Brush(colors=["#ff0000"], color_mode="fixed", default_size=6), eraser=gr.Eraser(),
                    fixed_canvas=False, height=620, elem_id="editor", buttons=["fullscreen"])
                with gr.Row():
                    save_btn = gr.Button("Save labels", variant="primary", elem_id="save-btn")
                    reload_btn = gr.Button("Reload labels", elem_id="reload-btn")
                    auto_seg = gr.Checkbox(label="Refresh the mask after each save", value=True,
                                           elem_id="auto-segment")
                save_info = gr.Markdown(elem_id="save-info")
                with gr.Accordion("Points (click to place)", open=True):
                    with gr.Row():
                        point_class = gr.Radio(label="Point class", choices=[], elem_id="point-class")
                        point_radius = gr.Slider(0, 32, value=3, step=1, label="Point radius (px)")
                        undo_point = gr.Button("Undo last point", elem_id="undo-point")
                    points_img = gr.Image(label="Points: click to add a point of the chosen class", type="numpy",
                                          interactive=False, elem_id="points-image", buttons=[])
                gr.Markdown(HELP)
            with gr.Column(scale=2, min_width=260):
                # JPEG: 2.5 ms to encode at 512x512 against 73 ms for Gradio's default WebP, on the save -> mask
                # path; a preview of a blend, which the Segment tab shows exactly
                live_view = gr.Image(label="Mask (live: refreshed after each save)", type="numpy", interactive=False,
                                     elem_id="live-overlay", buttons=["fullscreen"], height=420, format="jpeg")
                live_info = gr.Markdown("Save labels to see the dense mask here.", elem_id="live-info")
        points = gr.State([])
    ui.extra.update(editor=editor, gallery=gallery, legend=legend, auto_seg=auto_seg, point_class=point_class,
                    points_img=points_img, info=info, points=points, save_btn=save_btn, live_view=live_view,
                    live_info=live_info)

    @ui_errors
    def do_upload(paths: list[str] | None, project: dict[str, Any] | None, image: dict[str, Any] | None,
                  request: gr.Request) -> tuple[Any, Any, str]:
        project = need_project(project)
        if not paths:
            raise gr.Error("Choose one or more image files first.")
        done, failed = [], []
        with ui.client(request) as c:
            for p in paths:
                try:
                    with open(p, "rb") as f:
                        done.append(c.upload_image(project["id"], os.path.basename(p), f.read()))
                except Exception as e:  # noqa: BLE001 - report each file, keep uploading the rest
                    failed.append(f"{os.path.basename(p)}: {getattr(e, 'message', e)}")
            choices, gal = image_choices(c, project["id"])
        msg = f"Uploaded {len(done)} image(s)."
        if failed:
            msg += " Not uploaded: " + "; ".join(failed)
        first = done[0]["id"] if done and not image else (image["id"] if image else None)
        return gr.update(choices=choices, value=first), gal, msg

    upload_btn.click(do_upload, [files, ui.project, ui.image], [ui.image_dd, gallery, ui.status])

    @ui_errors
    def pick_from_gallery(evt: gr.SelectData, project: dict[str, Any] | None, request: gr.Request) -> Any:
        project = need_project(project)
        with ui.client(request) as c:
            ids = [i["id"] for i in c.images(project["id"])]
        return gr.update(value=ids[evt.index]) if evt.index < len(ids) else gr.update()

    gallery.select(pick_from_gallery, [ui.project], [ui.image_dd])

    @ui_errors
    def open_image(image_id: int | None, project: dict[str, Any] | None, current: dict[str, Any] | None,
                   request: gr.Request) -> tuple[Any, ...]:
        """The picked image in the editor, unless it is the one already open: the dropdown also reports a
        change when its choices are refreshed after a save, and loading the editor again then would wipe
        the strokes being drawn (and a second load racing the first can leave the canvas blank)."""
        if image_id and project and current and current["id"] == int(image_id):
            return (gr.skip(),) * 6
        return reload_image(image_id, project, request)

    @ui_errors
    def reload_image(image_id: int | None, project: dict[str, Any] | None,
                     request: gr.Request) -> tuple[Any, Any, Any, list[Any], str, str]:
        if not image_id or not project:
            return None, None, None, [], "Pick an image.", ""
        with ui.client(request) as c:
            img = load_image(c, project, int(image_id))
        colors = palette(project["classes"])
        # a full props update (not only the value) makes the editor start over: after strokes were drawn, a
        # value-only update at times left its canvas blank (headless chromium, see docs/PERFORMANCE.md)
        hexes = [c["color"] for c in project["classes"]]
        editor_update = gr.ImageEditor(value=editor_value(img["rgb"], img["label"], colors), brush=gr.Brush(
            colors=hexes, color_mode="fixed", default_color=hexes[0], default_size=6))
        return img, editor_update, points_view(img, project, []), [], revision_md(img), ""

    open_outputs = [ui.image, editor, points_img, points, info, save_info]
    open_progress = progress_without(open_outputs, editor)  # the editor is never a progress target (see there)
    ui.extra["open_event"] = ui.image_dd.change(open_image, [ui.image_dd, ui.project, ui.image], open_outputs,
                                                show_progress_on=open_progress)
    ui.extra["reload_event"] = reload_btn.click(reload_image, [ui.image_dd, ui.project], open_outputs,
                                                show_progress_on=open_progress)

    @ui_errors
    def add_point(evt: gr.SelectData, img: dict[str, Any] | None, project: dict[str, Any] | None,
                  cls: int | None, radius: float, pts: list[dict[str, Any]]) -> tuple[Any, list[Any], str]:
        img, project = need_image(img), need_project(project)
        if cls is None:
            raise gr.Error("Choose the point's class first.")
        x, y = int(evt.index[0]), int(evt.index[1])
        pts = [*pts, {"x": x, "y": y, "class_id": int(cls), "radius": int(radius)}]
        name = project["classes"][int(cls)]["name"]
        msg = f"{len(pts)} point(s) pending (last: {name} at {x}, {y}); Save to keep them."
        return points_view(img, project, pts), pts, msg

    points_img.select(add_point, [ui.image, ui.project, point_class, point_radius, points],
                      [points_img, points, save_info])

    @ui_errors
    def pop_point(img: dict[str, Any] | None, project: dict[str, Any] | None,
                  pts: list[dict[str, Any]]) -> tuple[Any, list[Any], str]:
        img, project = need_image(img), need_project(project)
        pts = pts[:-1]
        return points_view(img, project, pts), pts, f"{len(pts)} point(s) pending."

    undo_point.click(pop_point, [ui.image, ui.project, points], [points_img, points, save_info])

    @ui_errors
    def save(value: dict[str, Any] | None, img: dict[str, Any] | None, project: dict[str, Any] | None,
             pts: list[dict[str, Any]], request: gr.Request) -> tuple[Any, ...]:
        img, project = need_image(img), need_project(project)
        colors = palette(project["classes"])
        label = paint_points(editor_label(value, (img["height"], img["width"]), colors), pts)
        with ui.client(request) as c:
            saved = c.save_label_png(img["id"], encode_label_png(label), img.get("etag"))
        img = {**img, "label": label, "etag": saved["etag"], "revision": saved["revision"]}
        counts = ", ".join(f"{k}: {v}" for k, v in saved["class_counts"].items() if v) or "nothing labelled"
        msg = f"Saved revision {saved['revision']} ({saved['labeled_pixels']:,} labelled pixels — {counts})."
        # The editor already shows the strokes just saved: sending its 2 layers back would only make the
        # browser re-render the canvas before the refreshed mask may be asked for. Pending points are the
        # exception: they are burnt into the label, so the editor must show them. The points view (the
        # labels under the points) is sent by ``points_after_save``, once the mask is out.
        editor_update = editor_value(img["rgb"], label, colors) if pts else gr.skip()
        return img, editor_update, gr.skip(), [], revision_md(img), msg

    def points_after_save(img: dict[str, Any], project: dict[str, Any] | None) -> Any:
        """The points image after a save: the new labels, no pending point."""
        return points_view(img, project, []) if project else gr.skip()

    @ui_errors
    def after_save(project: dict[str, Any] | None, request: gr.Request) -> tuple[Any, Any]:
        """The image list and gallery (labelled marks) after a save, as their own event, so the refreshed
        mask (another listener of the save) never waits for them. Only the choices change, never the
        selected image: the annotator may already have opened the next one."""
        project = need_project(project)
        with ui.client(request) as c:
            choices, gal = image_choices(c, project["id"])
        return gr.update(choices=choices), gal

    # Registered by webui.app, which chains the refreshed mask into the same event (see save_and_segment
    # there): a second event would cost a browser round trip (~0.8 s measured) before the mask is asked for.
    ui.extra.update(save_fn=save, after_save_fn=after_save, points_after_save_fn=points_after_save,
                    save_io=([editor, ui.image, ui.project, points], [ui.image, editor, points_img, points, info,
                                                                      save_info]))


def on_project(project: dict[str, Any]) -> tuple[Any, Any, str]:
    """Updates of the Annotate tab when the project changes: brush palette, point classes, legend."""
    colors = [c["color"] for c in project["classes"]]
    brush = gr.ImageEditor(brush=gr.Brush(colors=colors, color_mode="fixed", default_color=colors[0],
                                          default_size=6), value=None)
    radio = gr.update(choices=[(f"{c['id']}: {c['name']}", c["id"]) for c in project["classes"]], value=0)
    return brush, radio, legend_html(project["classes"])
