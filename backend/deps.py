"""Request-scoped dependencies: the app context, a DB session per request, and auth.

Routers declare what they need with the aliases at the bottom (``SessionDep``, ``CtxDep``,
``Reader``, ``Writer``) instead of reaching into ``app.state``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.db import session_scope
from core.errors import ErrorCode, ServiceError
from core.settings import Settings

from .services.annotations import AnnotationService
from .services.export import Exporter
from .services.images import ImageService
from .services.jobs import JobService
from .services.live import LiveService
from .services.lookup import image_or_404 as image_or_404
from .services.lookup import project_or_404 as project_or_404
from .services.models import ModelService
from .services.predictions import PredictionService
from .services.registry import ModelRegistry
from .services.segmentation import SegmentationService


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    registry: ModelRegistry
    images: ImageService
    annotations: AnnotationService
    predictions: PredictionService
    jobs: JobService
    segmentation: SegmentationService
    live: LiveService
    exports: Exporter
    models: ModelService


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def get_session(request: Request) -> Iterator[Session]:
    """One request = one unit of work (``session_scope``): committed if the route returns, else rolled back."""
    with session_scope(get_ctx(request).sessions) as session:
        yield session


CtxDep = Annotated[AppContext, Depends(get_ctx)]
# "function" scope: commit before the response is sent, so a client never reads before its own write
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_AUTHOR = re.compile(r"[A-Za-z0-9 ._@\-]{1,128}")


@dataclass
class Principal:
    role: str  # "admin" | "reader" | "anonymous" (auth off)
    name: str


def _principal(request: Request, authorization: str | None, x_user: str | None) -> Principal:
    settings = get_ctx(request).settings
    name = x_user if x_user and _AUTHOR.fullmatch(x_user) else None
    if not settings.auth_enabled:
        return Principal("admin", name or "anonymous")
    if not authorization or not authorization.lower().startswith("bearer "):
        raise ServiceError(ErrorCode.UNAUTHORIZED, "missing bearer token: send 'Authorization: Bearer <token>'",
                           headers={"WWW-Authenticate": "Bearer"})
    token = authorization[7:].strip()
    # compare against every token (constant time each) so timing does not tell which list matched
    is_admin = any(hmac.compare_digest(token.encode(), t.encode()) for t in settings.admin_tokens)
    is_reader = any(hmac.compare_digest(token.encode(), t.encode()) for t in settings.read_tokens)
    if is_admin:
        return Principal("admin", name or "admin")
    if is_reader:
        return Principal("reader", name or "reader")
    raise ServiceError(ErrorCode.UNAUTHORIZED, "invalid bearer token", headers={"WWW-Authenticate": "Bearer"})


def require_auth(request: Request, authorization: Annotated[str | None, Header()] = None,
                 x_user: Annotated[str | None, Header(description="author name recorded on saves")] = None
                 ) -> Principal:
    """Any valid token; read-only tokens may only GET/HEAD."""
    p = _principal(request, authorization, x_user)
    if p.role == "reader" and request.method not in ("GET", "HEAD", "OPTIONS"):
        raise ServiceError(ErrorCode.FORBIDDEN, "this token is read-only: only GET requests are allowed")
    return p


PrincipalDep = Annotated[Principal, Depends(require_auth)]
