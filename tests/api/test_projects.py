"""/projects: CRUD, class validation, path-like names, pretrained initialisation."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from .conftest import AppFactory, make_project, unique, upload_image


def test_create_get_list_update_delete(client: TestClient) -> None:
    name = unique()
    r = client.post("/projects", json={"name": name, "description": "hearts",
                                       "classes": [{"name": "bg"}, {"name": "LV", "color": "#FF0000"}]})
    assert r.status_code == 201, r.text
    p = r.json()
    assert p["name"] == name and p["variant"] == "b0" and p["active_version"] == 1
    assert p["classes"][1] == {"id": 1, "name": "LV", "color": "#ff0000"}
    assert p["classes"][0]["color"].startswith("#")
    assert p["created_at"].endswith(("Z", "+00:00"))

    assert client.get(f"/projects/{p['id']}").json()["name"] == name
    listing = client.get("/projects", params={"limit": 500}).json()
    assert any(x["id"] == p["id"] for x in listing["items"]) and listing["total"] >= 1

    r = client.patch(f"/projects/{p['id']}", json={"description": "new", "classes": [{"name": "background"},
                                                                                     {"name": "LV"}]})
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "new"
    assert r.json()["classes"][0]["name"] == "background" and r.json()["classes"][1]["color"] == "#ff0000"

    assert client.delete(f"/projects/{p['id']}").status_code == 204
    assert client.get(f"/projects/{p['id']}").status_code == 404


def test_paging(client: TestClient) -> None:
    for _ in range(3):
        make_project(client, classes=2)
    r = client.get("/projects", params={"offset": 1, "limit": 2}).json()
    assert len(r["items"]) == 2 and r["offset"] == 1 and r["limit"] == 2 and r["total"] >= 3
    assert client.get("/projects", params={"limit": 0}).status_code == 422


def test_duplicate_name_is_409(client: TestClient) -> None:
    p = make_project(client)
    r = client.post("/projects", json={"name": p["name"], "classes": [{"name": "a"}]})
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    other = make_project(client)
    r = client.patch(f"/projects/{other['id']}", json={"name": p["name"]})
    assert r.status_code == 409


@pytest.mark.parametrize("name", ["../etc", "a/b", "a\\b", "", ".hidden", "x" * 65, "a..b"])
def test_path_like_or_bad_names_are_422(client: TestClient, name: str) -> None:
    r = client.post("/projects", json={"name": name, "classes": [{"name": "a"}]})
    assert r.status_code == 422, r.text
    r = client.post("/projects", json={"name": unique(), "classes": [{"name": name}]})
    assert r.status_code == 422


def test_class_validation(client: TestClient) -> None:
    base = {"name": unique()}
    assert client.post("/projects", json={**base, "classes": []}).status_code == 422
    assert client.post("/projects", json={**base, "classes": [{"name": "a"}, {"name": "a"}]}).status_code == 422
    assert client.post("/projects", json={**base, "classes": [{"name": "a", "color": "red"}]}).status_code == 422
    r = client.post("/projects", json={**base, "classes": [{"name": f"c{i}"} for i in range(255)]})
    assert r.status_code == 422
    assert client.post("/projects", json={**base, "classes": [{"name": "a"}], "variant": "b9"}).status_code == 422


def test_class_count_is_fixed(client: TestClient) -> None:
    p = make_project(client, classes=2)
    r = client.patch(f"/projects/{p['id']}", json={"classes": [{"name": "a"}]})
    assert r.status_code == 409 and "number" in r.json()["detail"]
    r = client.patch(f"/projects/{p['id']}", json={"classes": [{"name": "a"}, {"name": "a"}]})
    assert r.status_code == 422


def test_unknown_project_is_404(client: TestClient) -> None:
    for method, url in [("get", "/projects/999999"), ("patch", "/projects/999999"), ("delete", "/projects/999999")]:
        r = getattr(client, method)(url, **({"json": {}} if method == "patch" else {}))
        assert r.status_code == 404 and r.json()["detail"] == "project 999999 not found"


def test_delete_removes_files(client: TestClient) -> None:
    p = make_project(client)
    img = upload_image(client, p["id"])
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    model_dir = ctx.settings.models_dir / str(p["id"])
    image_file = ctx.images.blobs.path(img["sha256"], ".png")
    assert model_dir.is_dir() and image_file.is_file()
    assert client.delete(f"/projects/{p['id']}").status_code == 204
    assert not model_dir.exists() and not image_file.exists()
    assert client.get(f"/images/{img['id']}").status_code == 404


def test_pretrained_init(apps: AppFactory, pretrained_dir: Path) -> None:
    c = apps.client(pretrained_dir=pretrained_dir)
    p = make_project(c, pretrained="mit_b0_hf.pth")
    v = c.get(f"/projects/{p['id']}/models/active").json()
    assert v["provenance"]["init"] == "pretrained" and v["provenance"]["layout"] == "hf"
    for bad, code in [("../mit_b0_hf.pth", 422), ("missing.pth", 422), ("garbage.pth", 422)]:
        r = c.post("/projects", json={"name": unique(), "classes": [{"name": "a"}], "pretrained": bad})
        assert r.status_code == code, (bad, r.text)
    # a project with a non-b0 variant cannot take b0 weights: the loader's message comes back
    r = c.post("/projects", json={"name": unique(), "classes": [{"name": "a"}], "variant": "b1",
                                  "pretrained": "mit_b0_hf.pth"})
    assert r.status_code == 422 and "mit_b1" in r.json()["detail"]


def test_pretrained_needs_configured_dir(client: TestClient) -> None:
    r = client.post("/projects", json={"name": unique(), "classes": [{"name": "a"}], "pretrained": "x.pth"})
    assert r.status_code == 422 and "pretrained_dir" in r.json()["detail"]


def test_seed_files_are_listed_with_what_they_hold(apps: AppFactory, tmp_path: Path) -> None:
    """GET /pretrained lists the seed checkpoints a project may start from: a bundle trained with this
    tool (encoder and a 3-class head), an ImageNet-style pickle (undescribed until loaded) and a broken
    file (listed with the reason); a project created from the bundle starts from its weights."""
    from model import ModelConfig, build_sasformer, save_bundle

    seeds = tmp_path / "seeds"
    bundle = save_bundle(build_sasformer(ModelConfig(num_classes=3)), tmp_path / "bundle", {"init": "scratch"})
    seeds.mkdir()
    (seeds / "cardiac_seed.safetensors").write_bytes((bundle / "model.safetensors").read_bytes())
    (seeds / "mit_b0.pth").write_bytes(b"\x80\x04not loaded for listing")
    (seeds / "broken.safetensors").write_bytes(b"\x00\x01")
    (seeds / "notes.txt").write_text("not a checkpoint")
    c = apps.client(pretrained_dir=seeds, default_pretrained=seeds / "cardiac_seed.safetensors")
    listed = {f["name"]: f for f in c.get("/pretrained").json()}
    assert sorted(listed) == ["broken.safetensors", "cardiac_seed.safetensors", "mit_b0.pth"]
    assert listed["cardiac_seed.safetensors"] | {"bytes": 0} == {
        "name": "cardiac_seed.safetensors", "bytes": 0, "layout": "sasformer", "num_classes": 3, "default": True,
        "error": None}
    assert listed["mit_b0.pth"]["layout"] is None and listed["mit_b0.pth"]["error"] is None
    assert "unreadable" in listed["broken.safetensors"]["error"]
    p = make_project(c, classes=3, pretrained="cardiac_seed.safetensors")
    v = c.get(f"/projects/{p['id']}/models/active").json()
    assert v["provenance"]["init"] == "pretrained" and v["provenance"]["layout"] == "sasformer"
    assert apps.client().get("/pretrained").json() == []  # no pretrained_dir: nothing to offer
