"""Shapes shared by several resources: names, colours, pages, errors."""

from __future__ import annotations

import re
from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query, UploadFile
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from core.errors import ErrorCode, ServiceError

T = TypeVar("T")

# Database integers are 32-bit (PostgreSQL INTEGER): larger ids cannot exist, so they are a 422/404, not a 500.
MAX_INT = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_INT)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]

# 1-64 of letters, digits, space, ``_-.``, starting with a letter or digit, never two dots in a row. Written
# without look-arounds so that the same pattern serves Python and the OpenAPI schema (ECMA regex).
NAME_MAX = 64
NAME_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9 _\-]|\.[A-Za-z0-9 _\-])*\.?$"
_NAME = re.compile(NAME_PATTERN)


def check_name(value: str) -> str:
    """Names become parts of file names and URLs elsewhere: refuse anything path-like."""
    if len(value) > NAME_MAX or not _NAME.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use 1-64 letters, digits, space, '_', '-' or '.', starting with a letter "
            "or digit (no '/', '\\\\' or '..')"
        )
    return value


# the check's own message on failure; the schema carries the same rule for clients and schema-driven tools
Name = Annotated[str, AfterValidator(check_name),
                 WithJsonSchema({"type": "string", "minLength": 1, "maxLength": NAME_MAX, "pattern": NAME_PATTERN})]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", examples=["#ff0000"])]

# A multipart file part as the schema states it and the request validation enforces it: bytes, at least one
# (an empty part is a 422 before any other check), never ``null`` (FastAPI would write ``anyOf [..., null]`` for
# an optional UploadFile, which reads as "send the text 'null'"). Declare ``file: Annotated[FilePart, File()]``.
UPLOAD_SCHEMA: dict[str, object] = {"type": "string", "contentMediaType": "application/octet-stream", "minLength": 1}


def _not_empty(file: UploadFile | None) -> UploadFile | None:
    if file is not None and file.size == 0:
        # a ServiceError passes through pydantic unwrapped: the same 422 body as the services' own check
        raise ServiceError(ErrorCode.INVALID, "empty upload")
    return file


FilePart = Annotated[UploadFile, WithJsonSchema(UPLOAD_SCHEMA), AfterValidator(_not_empty)]
OptionalFilePart = Annotated[UploadFile | None, WithJsonSchema(UPLOAD_SCHEMA), AfterValidator(_not_empty)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class ErrorBody(BaseModel):
    detail: str | list[dict[str, object]]
    code: str | None = None


_ERRORS = {
    400: "the body could not be parsed (malformed JSON or multipart)",
    401: "missing or unknown bearer token (when authentication is on)",
    403: "a read-only token on a request that writes",
    404: "unknown project, image, version, revision or job",
    409: "the request conflicts with the current state",
    412: "If-Match does not name the current annotation revision",
    413: "body over the upload limit, or image over the pixel limit",
    415: "not a PNG/JPEG/TIFF, undecodable, truncated or multi-frame",
    422: "validation: the schema's constraints, or rules that depend on the stored data",
    428: "If-Match is required once the image has an annotation revision",
    503: "a model version whose files are missing or unreadable",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` entries (``ErrorBody``) for these status codes."""
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


# what any route behind authentication may answer (``/ready``)
AUTH_RESPONSES = error_responses(401, 403)
# the resource routers' shared set: every code their services raise (503 wherever a stored image or model
# file is read, which is most of them)
ERROR_RESPONSES = error_responses(400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503)
