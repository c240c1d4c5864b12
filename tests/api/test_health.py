"""/health and /ready, request ids and structured logs."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from .conftest import AppFactory, make_project


def test_health_is_ok(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_ready_reports_every_check(client: TestClient) -> None:
    make_project(client)
    r = client.get("/ready")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True
    assert set(body["checks"]) == {"database", "storage", "broker", "model"}
    assert "loaded" in body["checks"]["model"]["detail"]


def test_ready_fails_with_reason_when_broker_unreachable(apps: AppFactory) -> None:
    c = apps.client(redis_url="redis://127.0.0.1:1/0")  # nothing listens on port 1
    r = c.get("/ready")
    assert r.status_code == 503
    broker = r.json()["checks"]["broker"]
    assert broker["ok"] is False and "unreachable" in broker["detail"]


def test_ready_with_redis_broker(apps: AppFactory) -> None:
    c = apps.client(redis_url="redis://127.0.0.1:6379/0")
    r = c.get("/ready")
    if r.json()["checks"]["broker"]["ok"] is False:
        pytest.skip("no Redis on 127.0.0.1:6379")
    assert r.status_code == 200 and "redis" in r.json()["checks"]["broker"]["detail"]


def test_ready_fails_when_model_files_are_gone(apps: AppFactory) -> None:
    import shutil

    c = apps.client()
    p = make_project(c)
    ctx = c.app.state.ctx  # type: ignore[attr-defined]
    shutil.rmtree(ctx.settings.models_dir / str(p["id"]) / "v1")
    ctx.registry.clear()
    r = c.get("/ready")
    assert r.status_code == 503
    assert r.json()["checks"]["model"]["ok"] is False


def test_request_id_is_returned_and_logged(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    r = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/health", headers={"X-Request-ID": "bad id with spaces\n"})
    assert r.headers["x-request-id"] != "bad id with spaces" and len(r.headers["x-request-id"]) == 32


def test_logs_are_json_lines_with_request_id() -> None:
    from backend.logs import JsonFormatter, request_id

    token = request_id.set("rid-1")
    try:
        rec = logging.LogRecord("sasformer.api", logging.INFO, __file__, 1, "hello %s", ("x",), None)
        rec.fields = {"status": 200}
        line = json.loads(JsonFormatter().format(rec))
    finally:
        request_id.reset(token)
    assert line["msg"] == "hello x" and line["request_id"] == "rid-1" and line["status"] == 200


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and "detail" in r.json()
