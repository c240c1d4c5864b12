"""UI latency: time from clicking "Segment" to the overlay being shown, in a real headless chromium.

Starts ``python -m backend`` (web UI mounted at /ui; fresh data directory, SQLite), creates a MiT-b0
project and uploads N distinct 512x512 RGB images (distinct, so every first Segment is a real model run:
predictions of stored images are cached per image and version). For each image the page opens it, then
the button is clicked from JavaScript and ``performance.now()`` is taken at the click and again when the
overlay <img> has a new, fully loaded source and the timing line is updated, so Selenium's polling is not
in the number. The model's
share comes from the backend's ``Server-Timing: model;dur=`` header, which the page shows. A second click
on the same image hits the prediction cache: that is the UI's own overhead (HTTP, PNG decode, blending,
Gradio transfer, browser decode). Prints p50/p95 and the share of the time spent outside the model.

    .venv/bin/python bench/ui_latency.py [--images 8] [--size 512]
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import make_driver  # noqa: E402
from tests.e2e.pages import open_tab, open_ui, pick_option, text_of, wait, wait_idle  # noqa: E402
from tests.served import Server  # noqa: E402

CLICK_AND_TIME = """
const cached = arguments[0];
const done = arguments[arguments.length - 1];
const box = document.getElementById('overlay');
const info = document.getElementById('seg-info');
const before = (box.querySelector('img') || {}).src || '';
const infoBefore = info.innerText;
const t0 = performance.now();
document.querySelector('button#segment-btn').click();
function check() {
  const img = box.querySelector('img');
  const shown = img && img.src && img.complete && img.naturalWidth > 0;
  const text = info.innerText;
  const settled = text !== infoBefore && text.includes('Model version') && !text.includes('processing');
  // cached case: the overlay is pixel-identical (same URL), so the event's end is the new info line
  if (shown && settled && (cached ? text.includes('cached') : img.src !== before)) {
    requestAnimationFrame(() => done(performance.now() - t0));
  } else if (performance.now() - t0 > 120000) { done(-1); } else { setTimeout(check, 5); }
}
check();
"""


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def scene(size: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    srv = Server(Path(tempfile.mkdtemp(prefix="sasformer-bench-ui-")))
    driver = None
    try:
        srv.wait_ready()
        api = httpx.Client(base_url=srv.url, timeout=120)
        p = api.post("/projects", json={"name": "bench", "variant": "b0", "classes": [
            {"name": n} for n in ("background", "a", "b", "c")]}).json()
        names = []
        for i in range(args.images + 1):  # +1: warm-up (model load)
            name = f"img{i:02d}.png"
            r = api.post(f"/projects/{p['id']}/images", files={"file": (name, scene(args.size, i))})
            r.raise_for_status()
            names.append(name)
        driver = make_driver()
        driver.set_script_timeout(180)
        open_ui(driver, srv.url)
        pick_option(driver, "project-select", "bench")
        cold, warm, model = [], [], []
        for i, name in enumerate(names):
            open_tab(driver, "Annotate")
            pick_option(driver, "image-select", name)
            wait(driver, lambda n=name: n in text_of(driver, "image-info"), 120, f"{name} to open")
            wait_idle(driver)
            open_tab(driver, "Segment")
            t = driver.execute_async_script(CLICK_AND_TIME, False)
            wait(driver, lambda n=name: "Model version" in text_of(driver, "seg-info"), 60, "the timing line")
            info = text_of(driver, "seg-info")
            m = re.search(r"model (\d+) ms", info)
            wait_idle(driver)
            t2 = driver.execute_async_script(CLICK_AND_TIME, True)
            wait_idle(driver)
            if t < 0 or t2 < 0 or m is None:
                raise RuntimeError(f"no overlay or no model time for {name}: {info!r}")
            if i == 0:
                continue  # warm-up: loads the model
            cold.append(t)
            model.append(float(m.group(1)))
            warm.append(t2)
        outside = [1 - mm / c for mm, c in zip(model, cold, strict=True)]
        print(f"UI latency, {args.size}x{args.size} RGB, MiT-b0, {len(cold)} images, headless chromium "
              f"({time.strftime('%Y-%m-%d')})")
        print("| case | p50 ms | p95 ms |")
        print("|---|---|---|")
        print(f"| click Segment -> overlay shown (model runs) | {pct(cold, .5):.0f} | {pct(cold, .95):.0f} |")
        print(f"| of which model (Server-Timing) | {pct(model, .5):.0f} | {pct(model, .95):.0f} |")
        print(f"| click Segment -> overlay shown (cached prediction) | {pct(warm, .5):.0f} | {pct(warm, .95):.0f} |")
        print(f"share outside the model: median {statistics.median(outside):.1%} "
              f"(min {min(outside):.1%}, max {max(outside):.1%}); "
              f"outside-model ms median {statistics.median([c - mm for c, mm in zip(cold, model, strict=True)]):.0f}")
    finally:
        if driver is not None:
            driver.quit()
        srv.stop()


if __name__ == "__main__":
    main()
