"""HTTP client of the UI: every action goes through the service's REST API (one code path with curl users).

The UI runs inside the API process, so the client talks to the same server over loopback. The server
address is taken from the request being handled (``scope["server"]``: the socket the browser reached),
which works for any ``--port`` without configuration; ``SASFORMER_UI_API_URL`` overrides it (e.g. when the
UI should call another API instance).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import connect_sse

TIMEOUT = httpx.Timeout(300.0, connect=10.0)


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every client: building one loads the CA bundle (15-25 ms of CPU measured),
    and the UI makes a client per event, two on the save -> live mask path."""
    return httpx.create_ssl_context()


class ApiError(Exception):
    """A non-2xx answer of the API, carrying the service's readable ``detail`` (never a traceback)."""

    def __init__(self, status: int, detail: Any, code: str | None = None, etag: str | None = None) -> None:
        self.status = status
        self.detail = detail
        self.code = code
        self.etag = etag
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """One readable line: validation lists become 'field: reason; ...'."""
        if isinstance(self.detail, list):
            parts = []
            for d in self.detail:
                if isinstance(d, dict):
                    loc = ".".join(str(x) for x in d.get("loc", []) if x not in ("body", "query", "path"))
                    parts.append(f"{loc}: {d.get('msg', d)}" if loc else str(d.get("msg", d)))
                else:
                    parts.append(str(d))
            text = "; ".join(parts)
        else:
            text = str(self.detail)
        return f"{text} (HTTP {self.status})"


def _raise_for(resp: httpx.Response) -> None:
    if resp.is_success:
        return
    try:
        body = resp.json()
        detail, code = body.get("detail", body), body.get("code")
    except (ValueError, AttributeError):
        detail, code = resp.text[:500] or resp.reason_phrase, None
    raise ApiError(resp.status_code, detail, code, resp.headers.get("ETag"))


class StudioClient:
    """Thin typed wrapper over the REST API (see docs/api.md); returns decoded JSON or raw bytes."""

    def __init__(self, base_url: str, token: str | None = None, user: str = "webui") -> None:
        headers = {"X-User": user}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=TIMEOUT, verify=_tls())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> StudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing --------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Any call; connection failures become an ApiError so the page shows a sentence, not a trace."""
        try:
            resp = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:
            raise ApiError(503, f"the API at {self.base_url} did not answer: {e}") from e
        _raise_for(resp)
        return resp

    def json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # ---- projects and images ---------------------------------------------------------------------
    def projects(self) -> list[dict[str, Any]]:
        return self.json("GET", "/projects", params={"limit": 500})["items"]

    def project(self, project_id: int) -> dict[str, Any]:
        return self.json("GET", f"/projects/{project_id}")

    def create_project(self, name: str, classes: list[dict[str, str]], description: str = "",
                       pretrained: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "classes": classes, "description": description}
        if pretrained:
            body["pretrained"] = pretrained
        return self.json("POST", "/projects", json=body)

    def seed_files(self) -> list[dict[str, Any]]:
        return self.json("GET", "/pretrained")

    def images(self, project_id: int) -> list[dict[str, Any]]:
        return self.json("GET", f"/projects/{project_id}/images", params={"limit": 500})["items"]

    def image(self, image_id: int) -> dict[str, Any]:
        return self.json("GET", f"/images/{image_id}")

    def upload_image(self, project_id: int, filename: str, data: bytes) -> dict[str, Any]:
        return self.json("POST", f"/projects/{project_id}/images", files={"file": (filename, data)})

    def image_file(self, image_id: int) -> bytes:
        return self.request("GET", f"/images/{image_id}/file").content

    def thumbnail(self, image_id: int, size: int = 128) -> bytes:
        return self.request("GET", f"/images/{image_id}/thumbnail", params={"size": size}).content

    # ---- annotations -----------------------------------------------------------------------------
    def annotation(self, image_id: int) -> dict[str, Any] | None:
        """Newest revision, or None before the first save."""
        try:
            return self.json("GET", f"/images/{image_id}/annotation")
        except ApiError as e:
            if e.status == 404 and e.code == "not_found" and "no annotation" in str(e.detail):
                return None
            raise

    def annotation_png(self, image_id: int) -> bytes:
        return self.request("GET", f"/images/{image_id}/annotation/png").content

    def save_label_png(self, image_id: int, png: bytes, etag: str | None) -> dict[str, Any]:
        """New revision from a label PNG; ``etag`` of the revision edited (412 when someone saved since)."""
        headers = {"If-Match": etag} if etag else {}
        return self.json("PUT", f"/images/{image_id}/annotation/png", files={"file": ("label.png", png)},
                         headers=headers)

    # ---- segmentation and attention --------------------------------------------------------------
    def segment_png(self, image_id: int, flip: bool = False, live: bool = False) -> httpx.Response:
        """The class map as a palette PNG; ``live``: from the project's live head (no TTA there)."""
        data = {"image_id": image_id, "format": "png", **({"live": True} if live else {"flip": flip})}
        return self.request("POST", "/segment", data=data)

    def segment_probabilities(self, image_id: int) -> dict[str, Any]:
        return self.json("POST", "/segment", data={"image_id": image_id, "format": "json", "probabilities": True})

    def attention_png(self, image_id: int, x: int, y: int, stage: str, opacity: float = 0.6) -> bytes:
        return self.request("GET", f"/images/{image_id}/attention",
                            params={"x": x, "y": y, "stage": stage, "format": "png", "opacity": opacity}).content

    def propagated_png(self, image_id: int, stage: str = "mean") -> bytes:
        return self.request("GET", f"/images/{image_id}/propagated", params={"stage": stage, "format": "png"}).content

    # ---- models and jobs -------------------------------------------------------------------------
    def models(self, project_id: int) -> list[dict[str, Any]]:
        return self.json("GET", f"/projects/{project_id}/models")

    def promote(self, project_id: int, version: int) -> dict[str, Any]:
        return self.json("POST", f"/projects/{project_id}/models/{version}/promote")

    def rollback(self, project_id: int) -> dict[str, Any]:
        return self.json("POST", f"/projects/{project_id}/models/rollback")

    def create_job(self, project_id: int, params: dict[str, Any]) -> dict[str, Any]:
        return self.json("POST", f"/projects/{project_id}/jobs", json=params)

    def jobs(self, project_id: int) -> list[dict[str, Any]]:
        return self.json("GET", f"/projects/{project_id}/jobs", params={"limit": 20})["items"]

    def job(self, job_id: int) -> dict[str, Any]:
        return self.json("GET", f"/jobs/{job_id}")

    def cancel_job(self, job_id: int) -> dict[str, Any]:
        return self.json("DELETE", f"/jobs/{job_id}")

    def job_events(self, job_id: int, timeout: float = 3600) -> Iterator[dict[str, Any]]:
        """The job's server-sent events: one JobPublic dict per change, until a terminal state (or
        ``timeout``). An ``error`` event (the job was deleted meanwhile) raises its ApiError."""
        try:
            with connect_sse(self.http, "GET", f"/jobs/{job_id}/events", params={"timeout": timeout},
                             timeout=httpx.Timeout(None, connect=10.0)) as source:
                if not source.response.is_success:
                    source.response.read()
                    _raise_for(source.response)
                for sse in source.iter_sse():
                    if sse.event == "progress":
                        yield sse.json()
                    elif sse.event == "error":
                        body = sse.json()
                        status = {"not_found": 404, "unavailable": 503}.get(body.get("code"), 500)
                        raise ApiError(status, body.get("detail"), body.get("code"))
        except httpx.HTTPError as e:  # SSEError (not an event stream) is one too
            raise ApiError(503, f"lost the job's event stream: {e}") from e

    def job_create_fields(self) -> set[str]:
        """Fields the server's JobCreate accepts (e.g. a time budget once the worker offers one)."""
        schema = self.json("GET", "/openapi.json")
        return set(schema["components"]["schemas"].get("JobCreate", {}).get("properties", {}))

    # ---- export ----------------------------------------------------------------------------------
    def export(self, project_id: int, what: str, source: str = "prediction") -> tuple[str, bytes]:
        """(file name, bytes) of masks.zip, coco.json or labels.zip."""
        params = {"source": source} if what == "coco.json" else {}
        return what, self.request("GET", f"/projects/{project_id}/export/{what}", params=params).content
