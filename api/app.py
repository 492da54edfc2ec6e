"""The FastAPI application: ``create_app(settings)``; ``api.app:app`` builds one from the environment.

The API process never imports torch (a test enforces it): it validates, stores, enqueues and
reads the database; all ML runs in the worker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import contract, dashboard
from api.cors import install_cors
from api.deps import Services
from api.dispatch import outbox_dispatcher
from api.errors import ErrorBoundaryMiddleware, install_handlers
from api.limits import BodySizeLimitMiddleware
from api.metrics import ApiMetrics, MetricsMiddleware
from api.routes import (
    adapters,
    admin,
    admin_read,
    concepts,
    docs,
    export,
    generate,
    generations,
    health,
    images,
    jobs,
    me,
)
from core.db.session import make_session_factory
from core.settings import Settings
from core.storage import make_store

STATIC_DIR = Path(__file__).with_name("static")
BODY_OVERHEAD_BYTES = 1024 * 1024
MAX_JSON_BYTES = 1024 * 1024

DESCRIPTION = """Mnemo teaches a text-to-image diffusion model your concepts one at a time
(continual personalization with diffusion-classifier scores), without keeping your photos.

Authenticate with `Authorization: Bearer <api key>`. Errors are JSON: `{"detail": "<message>"}`,
or for invalid fields (422) `{"detail": [{"loc": [...], "msg": ..., "type": ...}]}`; every answer
carries an `X-Request-ID` to quote when reporting a problem. An id that is not yours answers 404,
exactly like a missing one."""


def create_app(settings: Settings | None = None, *, dispatcher: Callable[[], None] | None = None) -> FastAPI:
    """Build the app. ``dispatcher`` replaces the outbox flush (default: ``core.queue.outbox``)."""
    settings = settings or Settings()
    session_factory = make_session_factory(settings.database_url)
    services = Services(
        settings=settings,
        session_factory=session_factory,
        store=make_store(settings),
        dispatch=dispatcher or outbox_dispatcher(session_factory=session_factory, settings=settings),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        session_factory.kw["bind"].dispose()  # close pooled DB connections at shutdown

    app = FastAPI(
        title="Mnemo",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served offline by api.routes.docs
        redoc_url=None,
    )
    app.state.services = services
    app.state.metrics = ApiMetrics(session_factory)

    routers = (concepts, jobs, generate, generations, images, adapters, export, me, admin, admin_read)
    for module in (*routers, health, docs):
        app.include_router(module.router, responses=contract.router_responses(module.router))
    dashboard.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    max_upload = settings.max_files_per_concept * settings.max_upload_bytes + BODY_OVERHEAD_BYTES
    app.add_middleware(BodySizeLimitMiddleware, max_upload_bytes=max_upload, max_other_bytes=MAX_JSON_BYTES)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_cors(app, origins=settings.cors_origins)
    app.add_middleware(ErrorBoundaryMiddleware)  # outermost: it sees every answer and every error
    install_handlers(app, page=_dashboard_page)
    return app


def _dashboard_page(request: Request, error: StarletteHTTPException) -> Response | None:
    """The HTML error page of a dashboard request, or None (answer JSON)."""
    if dashboard.is_page(request) and error.status_code in (403, 404, 405):
        return dashboard.error_page(request, status_code=error.status_code, detail=error.detail)
    return None


def __getattr__(name: str) -> Any:
    """``api.app:app`` for uvicorn: built on first access from the environment (``MNEMO_*``)."""
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
