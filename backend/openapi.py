"""Corrections to the generated OpenAPI schema, so that it states what the server accepts.

FastAPI writes an optional form field (``int | None = Form(None)``) as ``anyOf: [{type: integer}, {type: null}]``.
A multipart or urlencoded body has no ``null``: an optional field is sent or left out, and a part whose
text is ``null`` is refused (422). The schema therefore keeps the non-null alternative of such fields; not
being ``required`` already says they may be left out.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def install_openapi(app: FastAPI) -> None:
    """Wrap ``app.openapi`` so that the served schema (``/openapi.json``, ``/docs``) carries the corrections."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()  # cached by FastAPI until the routes change; the correction is idempotent
        drop_form_nulls(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def drop_form_nulls(schema: dict[str, Any]) -> None:
    """In place: form-body properties ``anyOf [X, null]`` become ``X`` (with the property's own keywords)."""
    components = schema.get("components", {}).get("schemas", {})
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            content = operation.get("requestBody", {}).get("content", {}) if isinstance(operation, dict) else {}
            for media_type in FORM_MEDIA_TYPES:
                body = content.get(media_type, {}).get("schema", {})
                ref = body.get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    body = components.get(ref.rsplit("/", 1)[1], {})
                for name, prop in list(body.get("properties", {}).items()):
                    body["properties"][name] = _without_null(prop)


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    options = prop.get("anyOf")
    if not isinstance(options, list):
        return prop
    rest = [o for o in options if o != {"type": "null"}]
    if len(rest) == len(options) or not rest:
        return prop
    out = {k: v for k, v in prop.items() if k != "anyOf" and not (k == "default" and v is None)}
    if len(rest) == 1:
        return {**rest[0], **out}
    return {**out, "anyOf": rest}
