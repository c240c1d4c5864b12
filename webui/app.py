"""The SASFormer Studio web UI: ``build_ui(settings)`` -> ``gr.Blocks``; ``mount_ui(app, settings)`` serves it
at ``/ui`` from the API process (one process, one port).

Every action goes through the REST API (``webui.client``), so the UI can never disagree with curl users
or hold a second copy of model or storage logic. Panels live in ``webui.components``.
"""

import re
from typing import Any

import webui  # noqa: F401  (sets GRADIO_ANALYTICS_ENABLED / HF_HUB_OFFLINE before gradio is imported)

import gradio as gr  # isort: skip
from fastapi import FastAPI

from core.settings import Settings

from . import gradio_fixes
from .components import annotate, explore, learn
from .components.common import Shared, progress_without, ui_errors

UI_PATH = "/ui"
CSS = """
.sf-legend td, .sf-legend th { padding: 2px 6px; font-size: 0.9em; }
#job-progress { font-size: 0.95em; }
"""
CLASS_LINE = re.compile(r"^\s*(?P<name>.+?)\s*(?P<color>#[0-9a-fA-F]{6})?\s*$")
DEFAULT_CLASSES = "background #000000\nforeground #ff0000"
RANDOM_START = "Random weights (no seed model on this server)"


def seed_label(seed: dict[str, Any]) -> str:
    """How a seed file is offered: what it holds decides what a project gets from it."""
    what = {"sasformer": "model trained with SASFormer Studio", "nvlabs": "ImageNet MiT encoder",
            "hf": "ImageNet SegFormer encoder"}.get(seed["layout"] or "", "checkpoint")
    head = f", {seed['num_classes']} classes" if seed["num_classes"] else ""
    return f"{seed['name']} ({what}{head})"


def parse_classes(text: str) -> list[dict[str, str]]:
    """One class per line: ``name`` or ``name #rrggbb`` (the server picks a colour when none is given)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        m = CLASS_LINE.match(line)
        assert m is not None  # the pattern matches any non-blank line
        spec = {"name": m["name"]}
        if m["color"]:
            spec["color"] = m["color"].lower()
        out.append(spec)
    if not out:
        raise gr.Error("Give at least one class, one per line, e.g. 'background #000000'.")
    return out


def build_ui(settings: Settings | None = None) -> gr.Blocks:
    """The Blocks app; handlers reach the API via the request's server address (see ``Shared.client``)."""
    settings = settings or Settings()
    with gr.Blocks(title="SASFormer Studio") as demo:
        gr.Markdown("# SASFormer Studio\nScribble or click a few pixels per class; the model turns them into dense "
                    "masks and learns your classes. *A new project's model is untrained: fine-tune it on your "
                    "labels before trusting its masks.*")
        with gr.Row():
            project_dd = gr.Dropdown(label="Project", choices=[], scale=2, elem_id="project-select")
            image_dd = gr.Dropdown(label="Image", choices=[], scale=3, elem_id="image-select")
            refresh = gr.Button("↻ Refresh", scale=0, min_width=100, elem_id="refresh-btn")
        new_acc = gr.Accordion("New project", open=False, elem_id="new-project")
        with new_acc, gr.Row():
            new_name = gr.Textbox(label="Name", placeholder="e.g. heart-mri", elem_id="new-project-name")
            new_classes = gr.Textbox(label="Classes: one per line, 'name' or 'name #rrggbb'", lines=4,
                                     value=DEFAULT_CLASSES, elem_id="new-project-classes")
            seed_dd = gr.Dropdown(label="Start from", choices=[(RANDOM_START, "")], value="", elem_id="seed-select",
                                  info="a seed model trained offline gives useful masks at once; a random start "
                                       "gives noise until the live head and fine-tuning learn from your labels")
            create_btn = gr.Button("Create project", variant="primary", scale=0, elem_id="create-project")
        status = gr.Markdown(elem_id="status")
        ui = Shared(settings=settings, project=gr.State(None), image=gr.State(None), status=status,
                    project_dd=project_dd, image_dd=image_dd)
        with gr.Tabs():
            annotate.build(ui)
            explore.build(ui)
            learn.build(ui)
        x = ui.extra

        @ui_errors
        def list_projects(request: gr.Request) -> tuple[Any, Any, Any]:
            with ui.client(request) as c:
                projects = c.projects()
                fields = c.job_create_fields()
                seeds = c.seed_files()
            choices = [(f"{p['name']} (#{p['id']})", p["id"]) for p in projects]
            default = next((f["name"] for f in seeds if f["default"]), "")
            return (gr.update(choices=choices), learn.job_fields_visible(fields),
                    gr.update(choices=[(RANDOM_START if not seeds else "Random weights (untrained)", ""),
                                       *[(seed_label(f), f["name"]) for f in seeds if not f["error"]]],
                              value=default))

        demo.load(list_projects, None, [project_dd, x["budget"], seed_dd])

        @ui_errors
        def create(name: str, classes: str, seed: str | None, request: gr.Request) -> tuple[Any, str, Any]:
            if not name.strip():
                raise gr.Error("Give the project a name.")
            with ui.client(request) as c:
                p = c.create_project(name.strip(), parse_classes(classes), pretrained=seed or None)
                choices = [(f"{q['name']} (#{q['id']})", q["id"]) for q in c.projects()]
            start = (f"started from seed model `{seed}`" if seed else
                     "started from random weights: masks are noise until it learns from your labels")
            msg = (f"Created project **{p['name']}** with classes " + ", ".join(c["name"] for c in p["classes"])
                   + f" (model v{p['active_version']}, {start}).")
            return gr.update(choices=choices, value=p["id"]), msg, gr.Accordion(open=False)

        create_btn.click(create, [new_name, new_classes, seed_dd], [project_dd, status, new_acc])

        @ui_errors
        def open_project(pid: int | None, request: gr.Request) -> tuple[Any, ...]:
            if not pid:
                return (None, gr.update(choices=[], value=None), [], gr.update(), gr.update(), "", gr.update(),
                        gr.update(), gr.update(), gr.update(), None)
            with ui.client(request) as c:
                p = c.project(int(pid))
                choices, gal = annotate.image_choices(c, p["id"])
                models = learn.versions_table(c.models(p["id"]))
            editor, radio, legend = annotate.on_project(p)
            first = choices[0][1] if choices else None
            # ui.image is cleared: the editor was just emptied, so the first image must load even if it was open
            return (p, gr.update(choices=choices, value=first), gal, editor, radio, legend,
                    explore.on_project(p), models, None, None, None)

        project_outputs = [ui.project, image_dd, x["gallery"], x["editor"], x["point_class"], x["legend"],
                           x["visible"], x["versions"], x["seg"], x["overlay"], ui.image]
        project_progress = progress_without(project_outputs, x["editor"])
        project_dd.change(open_project, [project_dd], project_outputs, show_progress_on=project_progress).then(
            x["refresh_models"], [ui.project], [x["versions"], x["base"], x["promote_v"]])
        refresh.click(list_projects, None, [project_dd, x["budget"]]).then(
            open_project, [project_dd], project_outputs, show_progress_on=project_progress)

        # The attention tab's clickable image follows the opened image: on opening or reloading it, not on
        # every change of the image state (a save changes it too, and re-sending the picture then would cost
        # an encode and a transfer on the save -> mask path for nothing).
        for ev in (x["open_event"], x["reload_event"]):
            ev.success(explore.on_image, [ui.image], [x["att_src"]], show_progress="hidden")

        def auto_segment(enabled: bool, img: Any, project: Any, use_live: bool, tta: bool, alpha: float, shown: Any,
                         request: gr.Request, overlay: bool = True) -> Any:
            """Re-segment after a save or on opening an image when the annotator asked for it (checkbox on the
            Annotate tab): with live mode on (the default) this is the mask of the head refitted on the labels
            saved so far, shown beside the editor and on the Segment tab."""
            if not enabled:
                return (gr.skip(),) * 6
            if not img:  # no image open (project switched, or none uploaded yet): nothing to show
                return None, None, "", "", None, "Save labels to see the dense mask here."
            s, rgb, legend, info = x["segment_fn"](img, project, use_live, tta, alpha, shown, request)
            # After a save (``overlay=False``) the Segment tab is hidden: its overlay is drawn from ``seg`` when
            # that tab is opened (explore's select event), as encoding the same picture twice would delay the
            # live view. An image may be opened from the Segment tab, so opening draws it at once.
            return s, rgb if overlay else gr.skip(), legend, info, rgb, info

        seg_inputs, seg_outputs = x["seg_io"]
        auto_io = ([x["auto_seg"], *seg_inputs], [*seg_outputs, x["live_view"], x["live_info"]])
        save_inputs, save_outputs = x["save_io"]

        def save_and_segment(value: Any, img: Any, project: Any, pts: Any, enabled: bool, _img: Any, _project: Any,
                             use_live: bool, tta: bool, alpha: float, shown: Any, request: gr.Request) -> Any:
            """Save, show the save's result at once, then the refreshed mask, in one event: chaining the mask
            as a second event costs a browser round trip before it is even asked for."""
            saved = x["save_fn"](value, img, project, pts, request)
            n = len(saved)
            yield (*saved, *(gr.skip(),) * 6)
            yield (*(gr.skip(),) * n, *auto_segment(enabled, saved[0], project, use_live, tta, alpha, shown, request,
                                                                      overlay=False))
            # last, off the save -> mask path: the points image with the new labels
            points_at = save_outputs.index(x["points_img"])
            yield tuple(x["points_after_save_fn"](saved[0], project) if i == points_at else gr.skip()
                        for i in range(n + 6))

        x["save_btn"].click(save_and_segment, [*save_inputs, *auto_io[0]], [*save_outputs, *auto_io[1]],
                            show_progress_on=progress_without([*save_outputs, *auto_io[1]], x["editor"])).then(
            x["after_save_fn"], [ui.project], [image_dd, x["gallery"]], show_progress="hidden")
        # Opening an image shows its current live mask at once (where to correct, as in ilastik's live view),
        # and the server computes the image's features now, while the annotator draws, not after the save.
        x["open_event"].success(auto_segment, *auto_io, show_progress="hidden")
    demo.queue(default_concurrency_limit=4)
    return demo


def mount_ui(app: FastAPI, settings: Settings) -> FastAPI:
    """Serve the UI at ``/ui``. With API tokens configured the UI asks for a login whose password is an
    admin token (the UI edits, so read-only tokens cannot log in) and then calls the API with that role."""
    auth = None
    if settings.auth_enabled:
        tokens = set(settings.admin_tokens)

        def auth(_user: str, password: str) -> bool:
            return password in tokens
    gradio_fixes.mount(app, UI_PATH)  # before Gradio's app: its fixed page script wins (see gradio_fixes)
    return gr.mount_gradio_app(app, build_ui(settings), path=UI_PATH, auth=auth, show_error=True, css=CSS,
                               footer_links=["settings"], ssr_mode=False, mcp_server=False)
