"""``create_app(settings)``: wires settings, database, storage and services into a FastAPI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core.db import make_engine, make_sessionmaker, migrate
from core.settings import Settings
from jobs.queue import CeleryJobQueue, JobQueue

from . import __version__
from .deps import AppContext, require_auth
from .errors import install_error_handlers
from .logs import BodyLimitMiddleware, RequestContextMiddleware, setup_logging
from .openapi import install_openapi
from .routers import annotations as annotations_router
from .routers import attention, export, health, images, jobs, models, pretrained, projects, segment
from .services.annotations import AnnotationService
from .services.export import Exporter
from .services.images import ImageService
from .services.jobs import JobService
from .services.live import LiveService
from .services.models import ModelService
from .services.predictions import PredictionService
from .services.registry import ModelRegistry
from .services.segmentation import SegmentationService

DESCRIPTION = """Dense masks from sparse scribbles and clicks (SASFormer). Errors are JSON `{"detail": ...}`.
A new project's first model version is randomly initialised (or from a configured pretrained checkpoint):
its masks are meaningless until the project has been fine-tuned on its labels."""


def build_context(settings: Settings, queue: JobQueue | None = None) -> AppContext:
    """The services without HTTP: also what the worker and the web UI construct."""
    settings.ensure_dirs()
    engine = make_engine(settings)
    migrate(engine)
    registry = ModelRegistry(settings)
    ann = AnnotationService(settings)
    images = ImageService(settings)
    predictions = PredictionService(settings)
    sessions = make_sessionmaker(engine)
    live = LiveService(settings, registry, sessions)
    ann.on_saved.append(live.on_saved)
    return AppContext(
        settings=settings, engine=engine, sessions=sessions, registry=registry,
        images=images, annotations=ann, predictions=predictions,
        jobs=JobService(settings, queue or CeleryJobQueue(settings), registry, ann, sessions),
        segmentation=SegmentationService(registry, images, predictions, live),
        live=live,
        exports=Exporter(registry, images, predictions, ann), models=ModelService(registry, predictions),
    )


def create_app(settings: Settings | None = None, queue: JobQueue | None = None) -> FastAPI:
    settings = settings or Settings()
    setup_logging(settings.log_level, settings.log_json)
    ctx = build_context(settings, queue)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.live.close()  # finish queued live refits before the process goes

    app = FastAPI(title="SASFormer Studio API", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    app.state.ctx = ctx
    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["*"], allow_headers=["*"], expose_headers=["ETag", "X-Request-ID"])
    app.add_middleware(RequestContextMiddleware)
    app.include_router(health.router)
    secured = [Depends(require_auth)]
    for r in (projects, images, annotations_router, segment, attention, models, pretrained, jobs, export):
        app.include_router(r.router, dependencies=secured)
    app.include_router(health.ready_router, dependencies=secured)
    if settings.ui_enabled:
        from webui.app import mount_ui  # gradio is imported only when the UI is served

        mount_ui(app, settings)
    return app
