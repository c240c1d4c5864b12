"""Segment, uncertainty and attention tabs: what the active model makes of the current image.

Predictions, attention maps and propagated labels are computed by the API (``POST /segment``,
``GET /images/{id}/attention``, ``GET /images/{id}/propagated``); this module blends them over the image
and keeps the class map in session state so opacity and class visibility change without recomputing.
"""

import json
import time
from typing import Any

import gradio as gr

from ..imaging import (
    class_overlay,
    decode_b64_array,
    decode_class_map,
    decode_rgb,
    entropy_view,
    legend_html,
    mark_cross,
    palette,
)
from .common import Shared, need_image, need_project, ui_errors

ATTENTION_HELP = """**How labels spread.** SASFormer's encoder has four stages (1/4, 1/8, 1/16, 1/16 of the image with
the default strides). In each, a patch attends to (a pooled version of) every other patch. The heatmaps show where
the patch under your click looks, per stage and as their **mean** (paper Fig. 3): bright regions are the patches
whose labels and predictions flow to the clicked pixel. During training the affinity loss asks each unlabelled
patch's prediction to agree with this attention-weighted mix of the others (Eq. 4-7), so scribbles spread to
pixels that attend to them. The **propagated labels** map is exactly that mix, Y = A·P, taken as a class map: where it
agrees with the segmentation, attention supports the prediction; where it differs, a scribble there helps."""

UNCERTAINTY_HELP = """Per-pixel **entropy** of the predicted class probabilities (0 = certain; log C = all classes
equally likely), coloured black → red → yellow → white relative to the most uncertain pixel. Bright regions are
where the model hesitates: a scribble or click there teaches it most."""


def server_model_ms(header: str | None) -> float | None:
    """``Server-Timing: model;dur=12.3`` -> 12.3."""
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        if name == "model" and params.startswith("dur="):
            return float(params[4:])
    return None


def build(ui: Shared) -> None:
    with gr.Tab("Segment", id="tab-segment") as seg_tab:
        with gr.Row():
            seg_btn = gr.Button("Segment", variant="primary", elem_id="segment-btn")
            live = gr.Checkbox(label="Live mask (refitted on every save, in seconds)", value=True, elem_id="live-mode")
            flip = gr.Checkbox(label="Flip TTA (model masks only; slower, smoother)", value=False)
            opacity = gr.Slider(0, 1, value=0.5, step=0.05, label="Overlay opacity", elem_id="opacity")
        visible = gr.CheckboxGroup(label="Visible classes", choices=[], elem_id="visible-classes")
        with gr.Row():
            overlay = gr.Image(label="Segmentation overlay", type="numpy", interactive=False, elem_id="overlay",
                               buttons=["download", "fullscreen"])
            with gr.Column(scale=0, min_width=260):
                seg_legend = gr.HTML(elem_id="seg-legend")
                seg_info = gr.Markdown(elem_id="seg-info")
        with gr.Accordion("Uncertainty (where to scribble next)", open=False):
            unc_btn = gr.Button("Show uncertainty", elem_id="uncertainty-btn")
            unc_img = gr.Image(label="Entropy heatmap", type="numpy", interactive=False, elem_id="uncertainty")
            unc_info = gr.Markdown(UNCERTAINTY_HELP)
    with gr.Tab("Attention", id="tab-attention"):
        gr.Markdown("Click a pixel of the image to see where its patch attends in each encoder stage.")
        with gr.Row():
            att_src = gr.Image(label="Click a pixel", type="numpy", interactive=False, elem_id="attention-source",
                               buttons=[])
            att_maps = gr.Gallery(label="Attention: stages 1-4, mean, propagated labels", columns=3, height=520,
                                  elem_id="attention-maps", allow_preview=True)
        att_info = gr.Markdown(elem_id="attention-info")
        gr.Markdown(ATTENTION_HELP)
    seg = gr.State(None)  # {"image_id", "class_map", "areas", "version"}
    ui.extra.update(visible=visible, seg=seg, overlay=overlay, seg_legend=seg_legend, att_src=att_src)

    def render(s: dict[str, Any] | None, img: dict[str, Any] | None, project: dict[str, Any] | None,
               alpha: float, shown: list[int] | None) -> tuple[Any, str]:
        if not s or not img or not project or s["image_id"] != img["id"]:
            return None, ""
        vis = set(shown) if shown is not None else None
        rgb = class_overlay(img["rgb"], s["class_map"], palette(project["classes"]), alpha, vis)
        return rgb, legend_html(project["classes"], s["areas"], vis)

    @ui_errors
    def segment(img: dict[str, Any] | None, project: dict[str, Any] | None, use_live: bool, tta: bool,
                alpha: float, shown: list[int] | None, request: gr.Request) -> tuple[Any, ...]:
        img, project = need_image(img), need_project(project)
        t0 = time.perf_counter()
        with ui.client(request) as c:
            resp = c.segment_png(img["id"], flip=tta, live=use_live)
        api_ms = (time.perf_counter() - t0) * 1000
        s = {"image_id": img["id"], "class_map": decode_class_map(resp.content),
             "areas": json.loads(resp.headers.get("X-Class-Areas", "{}")),
             "version": resp.headers.get("X-Model-Version")}
        model_ms = server_model_ms(resp.headers.get("Server-Timing"))
        cached = resp.headers.get("X-Cached") == "true"
        timing = f"model {model_ms:.0f} ms, " if model_ms is not None and not cached else ""
        if resp.headers.get("X-Mask-Source") == "live":
            n = resp.headers.get("X-Live-Images", "?")
            info = (f"**Live mask**: head fitted on the labels of {n} image{'s' if n != '1' else ''} over filter-bank "
                    f"and v{s['version']} encoder features · {timing}API round trip {api_ms:.0f} ms.")
        else:
            info = (f"Model version **v{s['version']}** · {timing}API round trip {api_ms:.0f} ms"
                    f"{' (cached prediction)' if cached else ''}"
                    f"{' · no labels yet: live masks start after the first save' if use_live else ''}.")
        rgb, legend = render(s, img, project, alpha, shown)
        return s, rgb, legend, info

    seg_outputs = [seg, overlay, seg_legend, seg_info]
    seg_inputs = [ui.image, ui.project, live, flip, opacity, visible]
    seg_btn.click(segment, seg_inputs, seg_outputs)
    ui.extra["segment_fn"] = segment
    ui.extra["seg_io"] = (seg_inputs, seg_outputs)
    for comp in (opacity, visible):
        comp.change(render, [seg, ui.image, ui.project, opacity, visible], [overlay, seg_legend],
                    show_progress="hidden")
    # The masks refreshed from the Annotate tab (live after each save, on opening an image) update ``seg``;
    # the overlay is drawn when this tab is shown, so the live path encodes one picture, not two.
    seg_tab.select(render, [seg, ui.image, ui.project, opacity, visible], [overlay, seg_legend],
                   show_progress="hidden")

    @ui_errors
    def uncertainty(img: dict[str, Any] | None, request: gr.Request) -> tuple[Any, str]:
        img = need_image(img)
        with ui.client(request) as c:
            body = c.segment_probabilities(img["id"])
        view, mean, top = entropy_view(img["rgb"], decode_b64_array(body["probabilities"]))
        return view, (f"Mean entropy {mean:.3f} nats of at most {top:.3f} (model v{body['model_version']}).\n\n"
                      + UNCERTAINTY_HELP)

    unc_btn.click(uncertainty, [ui.image], [unc_img, unc_info])

    @ui_errors
    def attention(evt: gr.SelectData, img: dict[str, Any] | None, request: gr.Request) -> tuple[Any, Any, str]:
        img = need_image(img)
        x, y = int(evt.index[0]), int(evt.index[1])
        t0 = time.perf_counter()
        maps = []
        with ui.client(request) as c:
            for stage in ("1", "2", "3", "4", "mean"):
                heat = decode_rgb(c.attention_png(img["id"], x, y, stage))
                maps.append((mark_cross(heat, x, y), "mean of stages" if stage == "mean" else f"stage {stage}"))
            prop = decode_class_map(c.propagated_png(img["id"], "mean"))
            project = c.project(c.image(img["id"])["project_id"])
        maps.append((class_overlay(img["rgb"], prop, palette(project["classes"]), 0.6), "propagated labels (mean)"))
        info = f"Query pixel ({x}, {y}) · {len(maps)} maps in {time.perf_counter() - t0:.1f} s."
        return mark_cross(img["rgb"], x, y), maps, info

    att_src.select(attention, [ui.image], [att_src, att_maps, att_info])


def on_image(img: dict[str, Any] | None) -> Any:
    """The attention tab's clickable image follows the opened image."""
    return img["rgb"] if img else None


def on_project(project: dict[str, Any]) -> Any:
    return gr.update(choices=[(c["name"], c["id"]) for c in project["classes"]],
                     value=[c["id"] for c in project["classes"]])
