"""Shapes shared by several resources: names, colours, pages, errors."""

from __future__ import annotations

import re
from typing import Annotated, Generic, TypeVar

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, Field

T = TypeVar("T")

# Database integers are 32-bit (PostgreSQL INTEGER): larger ids cannot exist, so they are a 422/404, not a 500.
MAX_INT = 2**31 - 1
IdPath = Annotated[int, Path(ge=1, le=MAX_INT)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}")


def check_name(value: str) -> str:
    """Names become parts of file names and URLs elsewhere: refuse anything path-like."""
    if not _NAME.fullmatch(value) or ".." in value:
        raise ValueError(
            f"invalid name {value!r}: use 1-64 letters, digits, space, '_', '-' or '.', starting with a letter "
            "or digit (no '/', '\\\\' or '..')"
        )
    return value


Name = Annotated[str, AfterValidator(check_name)]
Color = Annotated[str, Field(pattern=r"^#[0-9a-fA-F]{6}$", examples=["#ff0000"])]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    offset: int
    limit: int


class ErrorBody(BaseModel):
    detail: str | list[dict[str, object]]
    code: str | None = None


ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (401, 403, 404, 409, 412, 413, 415, 422, 428)
}
