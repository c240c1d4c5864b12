"""The mapping of the domain exception (``core.errors.ServiceError``) to HTTP, applied only at the edge.

Services raise ``ServiceError(ErrorCode.X, "message naming the offending value")``; routers never
build HTTP errors themselves. Every error body is JSON ``{"detail": ..., "code": ...}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from core.errors import ErrorCode, ServiceError

log = logging.getLogger("sasformer.api")


def install_error_handlers(app: FastAPI) -> None:
    """Map ServiceError and framework errors to JSON bodies; anything unexpected to a logged 500."""

    @app.exception_handler(ServiceError)
    async def _service(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail, "code": exc.code.value}, status_code=exc.status_code,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            # drop the raw input (may be a large upload or binary) and non-JSON ctx values
            errors.append({"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")})
        return JSONResponse({"detail": errors, "code": ErrorCode.INVALID.value}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = exc.headers
        allowed = allowed_methods(request) if exc.status_code == 405 else []
        if allowed:
            # Starlette names only the methods of the first route whose path matched; a path served by several
            # routes (GET and DELETE /images/{id}) supports the union
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal server error; see the server log for the request id"},
                            status_code=500)


def allowed_methods(request: Request) -> list[str]:
    """The methods of every route of the app whose path template matches this request's path (for ``Allow``).

    ``iter_route_contexts`` walks included routers with their prefixes; the templates keep their convertors
    (``{version:int}``), so a path is matched exactly as the router matches it.
    """
    path = request.scope["path"]
    root = request.scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        if route.path and route.methods and compile_path(route.path)[0].match(path):
            methods |= route.methods
    return sorted(methods)
