"""Model versions: list, active, promote, rollback, delete; the served version changes without a restart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from core.orm import Job, ModelVersion
from model import build_sasformer, load_bundle, save_bundle

from .conftest import make_project, random_image, upload_image


def add_version(client: TestClient, project_id: int, seed: int, metrics: dict | None = None) -> int:
    """What a training job does: write a bundle where the registry says, then register it."""
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as s:
        path = ctx.registry.allocate_dir(s, project_id)
        base, _ = load_bundle(ctx.settings.models_dir / str(project_id) / "v1")
        torch.manual_seed(seed)
        model = build_sasformer(base.cfg)
        save_bundle(model, path, {"init": "test", "seed": seed})
        v = ctx.registry.register(s, project_id, path, metrics=metrics or {"miou": 0.5}, parent_id=None)
        s.commit()
        return int(v.number)


@pytest.fixture
def project(client: TestClient) -> dict:
    return make_project(client, classes=2)


def test_list_get_active(client: TestClient, project: dict) -> None:
    pid = project["id"]
    versions = client.get(f"/projects/{pid}/models").json()
    assert [v["version"] for v in versions] == [1] and versions[0]["active"] is True
    assert versions[0]["provenance"]["init"] == "scratch" and versions[0]["variant"] == "b0"
    add_version(client, pid, seed=1, metrics={"miou": 0.7})
    versions = client.get(f"/projects/{pid}/models").json()
    assert [(v["version"], v["active"]) for v in versions] == [(1, True), (2, False)]
    assert versions[1]["metrics"] == {"miou": 0.7} and versions[1]["provenance"]["seed"] == 1
    assert client.get(f"/projects/{pid}/models/active").json()["version"] == 1
    assert client.get(f"/projects/{pid}/models/2").json()["version"] == 2
    assert client.get(f"/projects/{pid}/models/3").status_code == 404
    assert client.get("/projects/999999/models").status_code == 404


def test_promote_rollback_switch_served_model(client: TestClient, project: dict) -> None:
    pid = project["id"]
    img = upload_image(client, pid, random_image(32, 32, seed=11))
    add_version(client, pid, seed=123)

    def probs() -> np.ndarray:
        r = client.post("/segment", data={"image_id": img["id"], "probabilities": "true"})
        assert r.status_code == 200
        return np.asarray(r.json()["probabilities"]["data"]), r.json()["model_version"]

    p1, v = probs()
    assert v == 1
    r = client.post(f"/projects/{pid}/models/2/promote")
    assert r.status_code == 200 and r.json()["active"] is True
    p2, v = probs()
    assert v == 2 and p2 != p1  # served from the next request on, no restart
    assert client.post(f"/projects/{pid}/models/2/promote").status_code == 409
    r = client.post(f"/projects/{pid}/models/rollback")
    assert r.status_code == 200 and r.json()["version"] == 1
    p3, v = probs()
    assert v == 1 and p3 == p1
    assert client.post(f"/projects/{pid}/models/rollback").status_code == 409  # nothing left to undo
    hist = client.get(f"/projects/{pid}/models/history").json()
    assert [(h["version"], h["rolled_back"]) for h in hist] == [(2, True), (1, False)]
    # an explicit version is served without promoting it
    r = client.post("/segment", data={"image_id": img["id"], "version": "2"})
    assert r.json()["model_version"] == 2
    assert client.get(f"/projects/{pid}/models/active").json()["version"] == 1


def test_delete_unused_only(client: TestClient, project: dict) -> None:
    pid = project["id"]
    add_version(client, pid, seed=2)
    assert client.delete(f"/projects/{pid}/models/1").status_code == 409  # active
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as s:  # a queued job based on v2 keeps it
        v2 = s.query(ModelVersion).filter_by(project_id=pid, number=2).one()
        s.add(Job(project_id=pid, kind="fine_tune", state="queued", params={}, base_version_id=v2.id,
                  progress={}, author="t"))
        s.commit()
    r = client.delete(f"/projects/{pid}/models/2")
    assert r.status_code == 409 and "job" in r.json()["detail"]
    with ctx.sessions() as s:
        s.query(Job).filter_by(project_id=pid).update({"state": "cancelled"})
        s.commit()
    path = ctx.settings.models_dir / str(pid) / "v2"
    assert path.is_dir()
    assert client.delete(f"/projects/{pid}/models/2").status_code == 204
    assert not path.exists()
    assert client.get(f"/projects/{pid}/models/2").status_code == 404
    assert client.delete(f"/projects/{pid}/models/2").status_code == 404
    # a new version never reuses a number whose directory may still exist
    assert add_version(client, pid, seed=3) == 3


def test_register_refuses_foreign_bundle(client: TestClient, project: dict) -> None:
    from core.errors import ServiceError

    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with ctx.sessions() as s:
        path = ctx.registry.allocate_dir(s, project["id"])
        save_bundle(build_sasformer(variant="b0", num_classes=5), path)
        with pytest.raises(ServiceError, match="5 classes"):
            ctx.registry.register(s, project["id"], path)
        with pytest.raises(ServiceError, match="not found"):
            ctx.registry.register(s, project["id"], path.parent / "nope")
