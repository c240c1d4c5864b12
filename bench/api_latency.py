"""/segment latency over a real uvicorn server vs the bare ``Predictor.predict`` call, in one run.

Starts ``python -m backend`` on 127.0.0.1 (fresh data directory, SQLite), creates a project (MiT-b0,
4 classes), then POSTs a 512x512 RGB PNG upload to /segment (PNG answer; uploads are never cached)
from 1, 4 and 8 concurrent clients. The baseline is ``Predictor.predict`` on the decoded array with the
same bundle in this process, interleaved call by call with the one-client requests.
Prints p50/p95 and the server/bare ratio.

    .venv/bin/python bench/api_latency.py [--requests 40] [--size 512]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q / 100 * (len(xs) - 1))))]


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not start")


def run_clients(url: str, body: dict, png: bytes, clients: int, per_client: int) -> tuple[list[float], float]:
    lat: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(per_client):
                t0 = time.perf_counter()
                r = c.post("/segment", data=body, files={"file": ("img.png", png, "image/png")})
                dt = time.perf_counter() - t0
                assert r.status_code == 200, r.text
                with lock:
                    lat.append(dt)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=40, help="requests per concurrency level (and bare calls)")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()

    from model import Predictor, load_bundle

    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    png = buf.getvalue()

    home = Path(tempfile.mkdtemp(prefix="sasformer-bench-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SASFORMER_HOME": str(home), "SASFORMER_LOG_LEVEL": "WARNING", "SASFORMER_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "backend"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url, proc)
        p = httpx.post(f"{url}/projects", json={"name": "bench", "classes": [{"name": f"c{i}"} for i in range(4)]},
                       timeout=60).json()
        body = {"project_id": str(p["id"]), "format": "png"}
        run_clients(url, body, png, 1, 3)  # warm-up: model load, first-call allocations

        # bare call, same bundle, same image, in this process while the server idles. The machine may be
        # shared (training runs beside), so bare calls and one-client requests are interleaved: both see
        # the same load, and their ratio is meaningful even when absolute numbers drift.
        model, _ = load_bundle(home / "models" / str(p["id"]) / "v1")
        pred = Predictor(model, device="cpu")
        for _ in range(3):
            pred.predict(arr)
        bare, one, model_ms = [], [], []
        with httpx.Client(base_url=url, timeout=120) as c:
            for _ in range(args.requests):
                t0 = time.perf_counter()
                pred.predict(arr)
                bare.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                r = c.post("/segment", data=body, files={"file": ("img.png", png, "image/png")})
                one.append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
                model_ms.append(float(r.headers["server-timing"].split("dur=")[1]) / 1000)
        rows = [(1, pct(one, 50), pct(one, 95), 1 / statistics.mean(one))]
        for clients in (4, 8):
            per = max(1, args.requests // clients)
            lat, wall = run_clients(url, body, png, clients, per)
            rows.append((clients, pct(lat, 50), pct(lat, 95), len(lat) / wall))
    finally:
        proc.terminate()
        proc.wait(timeout=30)

    b50, b95 = pct(bare, 50), pct(bare, 95)
    print(f"/segment {args.size}x{args.size} RGB PNG upload -> palette PNG, MiT-b0, 4 classes, CPU, "
          f"torch threads {__import__('torch').get_num_threads()}, {args.requests} requests per level")
    print(f"{'clients':>8} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7} {'p50 / bare p50':>15}")
    print(f"{'bare':>8} {b50 * 1e3:8.1f} {b95 * 1e3:8.1f} {1 / statistics.mean(bare):7.2f} {'1.00':>15}")
    for clients, p50, p95, rps in rows:
        print(f"{clients:>8} {p50 * 1e3:8.1f} {p95 * 1e3:8.1f} {rps:7.2f} {p50 / b50:15.2f}")
    overhead = rows[0][1] / b50 - 1
    print(f"server overhead at p50, one client: {overhead * 100:+.1f}% (target <= 15%)")
    # per request: client latency minus that request's own Predictor.predict time (Server-Timing header);
    # unlike the ratio above it does not depend on the two runs seeing the same load
    own = [o - m for o, m in zip(one, model_ms, strict=True)]
    print(f"non-model time per request (latency - its predict time), one client: p50 {pct(own, 50) * 1e3:.1f} ms, "
          f"p95 {pct(own, 95) * 1e3:.1f} ms = {pct(own, 50) / pct(model_ms, 50) * 100:.1f}% of the p50 predict time "
          f"({pct(model_ms, 50) * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
