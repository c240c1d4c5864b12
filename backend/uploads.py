"""Multipart files -> ``Upload`` for the services, shared by every router that accepts a file.

Routers never import one another; what several of them need from a request lives here (and auth and
sessions in ``deps``).
"""

from __future__ import annotations

from fastapi import UploadFile

from core.settings import Settings

from .services.images import Upload


def upload_of(file: UploadFile) -> Upload:
    return Upload(file.filename, file.file)


def optional_upload(file: UploadFile | None) -> Upload | None:
    return None if file is None else upload_of(file)


def read_upload(file: UploadFile, settings: Settings) -> bytes:
    """At most the upload limit of the spooled file's bytes; 413 beyond it."""
    return upload_of(file).read(settings.max_upload_bytes)
