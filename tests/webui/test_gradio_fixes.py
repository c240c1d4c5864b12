"""The fixed Gradio page script (webui/gradio_fixes.py): every fix applies to the pinned Gradio, the app
serves the fixed script at Gradio's URL, and a fix that no longer matches is skipped, never half-applied."""

from __future__ import annotations

import logging
from pathlib import Path

import gradio as gr
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from webui import gradio_fixes
from webui.gradio_fixes import FIXES, Fix, patched_assets


def test_every_fix_applies_to_the_installed_gradio() -> None:
    assets, applied = patched_assets()
    assert applied == [f.name for f in FIXES], (
        f"Gradio {gr.__version__}: a page fix no longer matches; check whether the new version still exports "
        "the image editor on every status change (docs/PERFORMANCE.md) and update or drop the fix")
    (name, body), = assets.items()
    text = body.decode()
    for fix in FIXES:
        assert fix.new in text and fix.old not in text


def test_the_app_serves_the_fixed_script_in_place_of_gradios() -> None:
    app = FastAPI()
    assert gradio_fixes.mount(app, "/ui") == [f.name for f in FIXES]
    with gr.Blocks() as demo:
        gr.Markdown("x")
    gr.mount_gradio_app(app, demo, path="/ui", ssr_mode=False)
    (name, body), = patched_assets()[0].items()
    with TestClient(app) as client:
        r = client.get(f"/ui/assets/{name}")
        assert r.status_code == 200 and r.content == body
        assert r.headers["content-type"].startswith("text/javascript")
        assert client.get(f"/ui/assets/{name}", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
        other = next(p.name for p in gradio_fixes.assets_dir().glob("*.js") if p.name != name)
        assert client.get(f"/ui/assets/{other}").status_code == 200  # the rest is Gradio's, untouched


def test_a_fix_that_does_not_match_is_skipped_with_a_warning(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "Blocks-abc.js").write_text("a();b();b();")
    fixes = (Fix("once", "Blocks-*.js", "a();", "A();"), Fix("twice", "Blocks-*.js", "b();", "B();"),
             Fix("absent", "Blocks-*.js", "c();", "C();"))
    with caplog.at_level(logging.WARNING, "sasformer.webui"):
        assets, applied = patched_assets(fixes, tmp_path)
    assert applied == ["once"] and assets == {"Blocks-abc.js": b"A();b();b();"}
    assert "'twice' not applied" in caplog.text and "'absent' not applied" in caplog.text
