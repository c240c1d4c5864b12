"""Bearer tokens (admin vs read-only), CORS, upload limits at the edge, settings validation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from core.settings import Settings

from .conftest import AppFactory, png_bytes, random_image, unique

ADMIN = "admin-token-0123456789"
READER = "reader-token-0123456789"


@pytest.fixture(scope="module")
def secured(apps: AppFactory) -> TestClient:
    return apps.client(admin_tokens=[ADMIN], read_tokens=[READER], cors_origins=["https://ui.example"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_is_open_everything_else_needs_a_token(secured: TestClient) -> None:
    assert secured.get("/health").status_code == 200
    for method, url in [("get", "/projects"), ("get", "/ready"), ("post", "/projects"), ("get", "/images/1"),
                        ("post", "/segment"), ("get", "/jobs/1"), ("get", "/projects/1/models"),
                        ("get", "/projects/1/export/coco.json"), ("post", "/attention")]:
        r = getattr(secured, method)(url)
        assert r.status_code == 401, (url, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and "token" in r.json()["detail"]
    r = secured.get("/projects", headers=auth("wrong-token"))
    assert r.status_code == 401 and r.json()["detail"] == "invalid bearer token"
    assert secured.get("/projects", headers={"Authorization": "Basic abc"}).status_code == 401


def test_reader_may_only_get(secured: TestClient) -> None:
    body = {"name": unique(), "classes": [{"name": "a"}, {"name": "b"}]}
    r = secured.post("/projects", json=body, headers=auth(READER))
    assert r.status_code == 403 and "read-only" in r.json()["detail"]
    r = secured.post("/projects", json=body, headers={**auth(ADMIN), "X-User": "carol"})
    assert r.status_code == 201
    pid = r.json()["id"]
    assert secured.get(f"/projects/{pid}", headers=auth(READER)).status_code == 200
    assert secured.get("/ready", headers=auth(READER)).status_code == 200
    assert secured.delete(f"/projects/{pid}", headers=auth(READER)).status_code == 403
    assert secured.patch(f"/projects/{pid}", json={}, headers=auth(READER)).status_code == 403
    up = secured.post(f"/projects/{pid}/images", files={"file": ("a.png", png_bytes(random_image()))},
                      headers={**auth(ADMIN), "X-User": "carol"})
    assert up.status_code == 201
    r = secured.put(f"/images/{up.json()['id']}/annotation", json={"points": [{"x": 1, "y": 1, "class_id": 1}]},
                    headers={**auth(ADMIN), "X-User": "carol"})
    assert r.json()["author"] == "carol"
    assert secured.post("/segment", data={"image_id": up.json()["id"]}, headers=auth(READER)).status_code == 403
    assert secured.post("/segment", data={"image_id": up.json()["id"]}, headers=auth(ADMIN)).status_code == 200
    versions = secured.get(f"/projects/{pid}/models", headers=auth(READER)).json()
    assert versions[0]["provenance"]["created_by"] == "carol"


def test_cors(secured: TestClient, client: TestClient) -> None:
    pre = {"Origin": "https://ui.example", "Access-Control-Request-Method": "GET"}
    r = secured.options("/projects", headers=pre)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ui.example"
    r = secured.options("/projects", headers={**pre, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    # CORS is off unless origins are configured
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://ui.example"}).headers


def test_body_limit_refuses_before_reading(apps: AppFactory) -> None:
    c = apps.client(max_upload_bytes=2048)
    r = c.post("/projects/1/images", content=b"x" * 200_000, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 413 and "limit" in r.json()["detail"]

    def chunks():  # no Content-Length: counted while streaming
        for _ in range(100):
            yield b"y" * 4096

    r = c.post("/projects/1/images", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413


def test_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="SASFORMER_ADMIN_TOKENS"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="16 characters"):
        Settings(environment="production", admin_tokens=["changeme"])
    assert Settings(environment="production", admin_tokens=[ADMIN]).auth_enabled
    with pytest.raises(ValidationError):
        Settings(default_variant="b9")
    monkeypatch.setenv("SASFORMER_ADMIN_TOKENS", "a,b")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/1")
    monkeypatch.setenv("SASFORMER_HOME", "/tmp/sasf-home")
    s = Settings()
    assert s.admin_tokens == ["a", "b"] and s.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert s.broker_url == "redis://127.0.0.1:6379/1" and s.result_backend == s.broker_url
    assert str(s.images_dir) == "/tmp/sasf-home/images"
    monkeypatch.delenv("REDIS_URL")
    s = Settings()
    assert s.broker_url == "filesystem://" and s.result_backend.startswith("file://")
    assert {"data_folder_in", "data_folder_out", "processed_folder", "control_folder"} <= set(
        s.broker_transport_options)
