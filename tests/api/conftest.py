"""API test fixtures: an app per module on SQLite and on PostgreSQL, and small image helpers.

PostgreSQL runs at 127.0.0.1:5432 (trust auth, database ``test``) on every machine here; each app
gets its own schema, dropped afterwards, so parallel or repeated runs never collide. Where no
PostgreSQL answers, its tests are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import create_engine, text

from backend.app import create_app
from core.settings import Settings

PG_URL = os.environ.get("SASFORMER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"),
                            connect_args={"connect_timeout": 3})
        with eng.connect() as c:
            c.execute(text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:
        return False


_PG: bool | None = None


def require_pg() -> None:
    global _PG
    if _PG is None:
        _PG = _pg_available()
    if not _PG:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL not reachable at {PG_URL} (needed in CI)")
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}")


@pytest.fixture(scope="session")
def pretrained_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with one MiT-b0 checkpoint in HF layout (a randomly initialised SegformerModel)."""
    import torch
    from transformers import SegformerConfig, SegformerModel

    d = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    torch.save(SegformerModel(SegformerConfig()).state_dict(), d / "mit_b0_hf.pth")
    (d / "garbage.pth").write_bytes(b"not a checkpoint")
    return d


class AppFactory:
    """Builds apps with settings overrides on one database backend and disposes of them."""

    def __init__(self, backend: str, tmp: Path) -> None:
        self.backend = backend
        self.tmp = tmp
        self.schemas: list[str] = []
        self.clients: list[TestClient] = []

    def settings(self, **overrides: Any) -> Settings:
        home = self.tmp / f"home-{uuid.uuid4().hex[:8]}"
        kw: dict[str, Any] = {"home": home, "environment": "test", "log_json": True, "log_level": "WARNING"}
        if self.backend == "postgresql":
            schema = f"t_{uuid.uuid4().hex[:12]}"
            self.schemas.append(schema)
            kw.update(database_url=PG_URL, database_schema=schema)
        kw.update(overrides)
        return Settings(**kw)

    def client(self, **overrides: Any) -> TestClient:
        app = create_app(self.settings(**overrides))
        client = TestClient(app, raise_server_exceptions=False)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for c in self.clients:
            c.app.state.ctx.engine.dispose()  # type: ignore[attr-defined]
        if self.schemas:
            eng = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
            with eng.begin() as conn:
                for s in self.schemas:
                    conn.execute(text(f'DROP SCHEMA IF EXISTS "{s}" CASCADE'))
            eng.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def apps(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppFactory]:
    if request.param == "postgresql":
        require_pg()
    factory = AppFactory(request.param, tmp_path_factory.mktemp(request.param))
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def client(apps: AppFactory) -> TestClient:
    """A default app (no auth) shared by a test module; tests use unique project names."""
    return apps.client()


# ---- helpers --------------------------------------------------------------------------------------
def png_bytes(arr: np.ndarray, fmt: str = "PNG", **save: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def random_image(h: int = 48, w: int = 64, seed: int = 0, channels: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels > 1 else (h, w)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def unique(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_project(client: TestClient, classes: int = 3, **extra: Any) -> dict[str, Any]:
    body = {"name": unique(), "classes": [{"name": f"c{i}"} for i in range(classes)], **extra}
    r = client.post("/projects", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def upload_image(client: TestClient, project_id: int, arr: np.ndarray | None = None, name: str = "img.png",
                 seed: int | None = None) -> dict[str, Any]:
    if arr is None:
        arr = random_image(seed=seed if seed is not None else np.random.randint(1 << 30))
    r = client.post(f"/projects/{project_id}/images", files={"file": (name, png_bytes(arr), "image/png")})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def annotate(client: TestClient, image_id: int, class_id: int = 1, if_match: str | None = None) -> Any:
    headers = {"If-Match": if_match} if if_match else {}
    r = client.put(f"/images/{image_id}/annotation", headers=headers,
                   json={"strokes": [{"class_id": class_id, "width": 3, "points": [[2, 2], [20, 10]]}]})
    assert r.status_code == 200, r.text
    return r


HelperFn = Callable[..., Any]
