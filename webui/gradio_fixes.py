"""Two fixes (three substitutions) to Gradio 6.31's page script: the image editor is exported once per save, not ~15x.

Why this exists. Traced in headless chromium (docs/PERFORMANCE.md, live-mode latency): after the first save,
every status change of *any* event (pending, each yield, complete; the save's follow-up; opening an image)
made the page call the ImageEditor's ``get_data``, which renders background, label layer and composite to
PNGs in software WebGL and uploads all three: 13-15 exports per save cycle, two of them racing the save's
own export before its handler even started, and the rest competing with the mask's arrival. Two places in
the page's dispatcher (``Blocks-*.js``) cause it:

1. When an event completes, its stream state is set to ``closed`` even for events that do not stream.
   The loading-status store then tracks the event's *inputs* as well as its outputs, and every later status
   change refreshes each tracked component's state (``update_state`` -> its ``get_data``). After one save the
   editor, an input of the save, is tracked for good. Fixed: ``closed`` only for streaming events, as the
   ``waiting`` and ``open`` states already are.
2. The first message of every event resets the validation error of each of its inputs, which again goes
   through ``get_data``: one more export during each save. Fixed: the reset runs only after the event has
   shown a validation error (validators are the only source of one; this app defines none).

The fixed script is served in place of Gradio's at the same URL (``mount``, before Gradio's app is
mounted). Each fix is an exact text substitution that must match once; when it does not (another Gradio
version), the file is served unchanged and a warning is logged, so an upgrade can never break the page,
only lose the speed-up (``tests/webui/test_gradio_fixes.py`` fails then, to say so).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
from fastapi import FastAPI, Request
from fastapi.responses import Response

log = logging.getLogger("sasformer.webui")


@dataclass(frozen=True)
class Fix:
    """One exact substitution in a page script of the pinned Gradio."""

    name: str
    glob: str  # the built asset's file name pattern (its hash changes with the Gradio version)
    old: str
    new: str


FIXES: tuple[Fix, ...] = (
    Fix("inputs-not-tracked-after-complete", "Blocks-*.js",
        "if(s.stage===`complete`){n=`closed`,a.forEach",
        "if(s.stage===`complete`){r.connection_type===`stream`&&(n=`closed`),a.forEach"),
    Fix("validation-reset-only-after-error", "Blocks-*.js",
        "o===0&&r.inputs.forEach(e=>{this.update_state_cb(e,{loading_status:{validation_error:null}},!1)})",
        "o===0&&r.validation_shown&&(r.validation_shown=!1,r.inputs.forEach(e=>{this.update_state_cb(e,"
        "{loading_status:{validation_error:null}},!1)}))"),
    Fix("validation-error-remembered", "Blocks-*.js",
        "if(Array.isArray(s?.message)){r.connection_type",
        "if(Array.isArray(s?.message)){r.validation_shown=!0,r.connection_type"),
)


def assets_dir() -> Path:
    return Path(gr.__file__).parent / "templates" / "frontend" / "assets"


def patched_assets(fixes: tuple[Fix, ...] = FIXES, root: Path | None = None) -> tuple[dict[str, bytes], list[str]]:
    """``({asset file name: fixed script}, [names of the fixes applied])``. A fix whose text is not found
    exactly once in exactly one asset is skipped with a warning."""
    root = root or assets_dir()
    texts: dict[str, str] = {}
    applied: list[str] = []
    for fix in fixes:
        hits = [(p.name, texts.get(p.name) or p.read_text(encoding="utf-8")) for p in sorted(root.glob(fix.glob))]
        hits = [(n, t) for n, t in hits if t.count(fix.old) == 1]
        if len(hits) != 1:
            log.warning("Gradio page fix %r not applied: its text was found in %d assets (Gradio %s); the "
                        "image editor will be exported more often than needed", fix.name, len(hits), gr.__version__)
            continue
        name, text = hits[0]
        texts[name] = text.replace(fix.old, fix.new)
        applied.append(fix.name)
    return {n: t.encode() for n, t in texts.items()}, applied


def mount(app: FastAPI, ui_path: str) -> list[str]:
    """Serve the fixed scripts at their Gradio URLs; call before Gradio's app is mounted at ``ui_path`` (the
    first matching route wins). Returns the names of the fixes applied."""
    assets, applied = patched_assets()
    for name, body in assets.items():
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'

        def serve(request: Request, body: bytes = body, etag: str = etag) -> Response:
            headers = {"Cache-Control": "max-age=0, must-revalidate", "ETag": etag}
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
            return Response(body, media_type="text/javascript", headers=headers)

        app.add_api_route(f"{ui_path}/assets/{name}", serve, methods=["GET"], include_in_schema=False)
    return applied
