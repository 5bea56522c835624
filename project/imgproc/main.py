"""The FastAPI application factory: `uvicorn --factory imgproc.main:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgproc.cache.service import AsyncCache
from imgproc.config import Settings, get_settings
from imgproc.db import make_async_engine, make_sessionmaker
from imgproc.deps import Resources
from imgproc.errors import ServiceError, error_body, validation_summary
from imgproc.health.router import router as health_router
from imgproc.jobs.queue import JobQueue
from imgproc.jobs.router import router as jobs_router
from imgproc.jobs.status_cache import StatusCache
from imgproc.logging import configure_logging
from imgproc.metrics.api import ApiMetrics, instrument
from imgproc.middleware import RequestContextMiddleware, UploadLimitMiddleware
from imgproc.overload.middleware import Admission, AdmissionMiddleware
from imgproc.overload.ratelimit import RateLimiter, Rule
from imgproc.overload.shedding import Bounds, LoadGauge
from imgproc.storage.backend import open_store
from imgproc.unavailable import ROOTS as UNAVAILABLE_ROOTS
from imgproc.unavailable import is_unavailable

log = structlog.get_logger(__name__)
UPLOAD_PATHS = frozenset({"/crop", "/grayscale", "/resize"})
# Room for the multipart boundaries and the small form fields around the file itself.
MULTIPART_SLACK = 64 * 1024
RETRY_AFTER_SECONDS = 5


def _request_id(request: Request) -> str | None:
    value: str | None = getattr(request.state, "request_id", None)
    return value


def _error(
    request: Request, status: int, code: str, message: str, details: Any = None
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details=details, request_id=_request_id(request)),
        status_code=status,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _error(request, exc.status_code, exc.code, exc.message, exc.details)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        summary, details = validation_summary(exc.errors(), located=True)
        return _error(request, 422, "validation_error", f"bad request: {summary}", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        response = _error(request, exc.status_code, code, str(exc.detail))
        # Starlette's own headers (a 405's Allow) are part of the answer.
        response.headers.update(exc.headers or {})
        return response

    # A backing service that cannot serve now is the server's problem and worth a retry:
    # 503 + Retry-After. (The errors of databases, Redis and the disk, see unavailable.py;
    # one of those that is not an outage, e.g. a violated constraint, is a bug: 500.)
    async def backend_error(request: Request, exc: Exception) -> JSONResponse:
        if not is_unavailable(exc):
            return await internal_error(request, exc)
        log.warning("backend_unavailable", error=f"{type(exc).__name__}: {exc}"[:300])
        response = _error(
            request, 503, "service_unavailable", "a backing service is unavailable; try again"
        )
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response

    for root in UNAVAILABLE_ROOTS:
        app.add_exception_handler(root, backend_error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled_error", exc_info=exc)
        return _error(request, 500, "internal_error", "internal error; see the server log")


def _document_body_rules(app: FastAPI) -> None:
    """Add to the OpenAPI schema the rules of a form that FastAPI cannot derive from it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            resize = schema["components"]["schemas"]["Body_resize_resize_post"]
            resize["anyOf"] = [{"required": ["width"]}, {"required": ["height"]}]
            resize["description"] = "Give width, height or both."
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app and its connections (lazy: nothing connects until first used)."""
    settings = settings or get_settings()
    configure_logging(json=settings.log_json, level=settings.log_level)
    registry = CollectorRegistry()
    metrics = ApiMetrics(registry)
    engine = make_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        ping_after_idle=settings.db_ping_after_idle_seconds,
    )
    cache_client = AsyncCache(
        settings.effective_cache_url,
        timeout=settings.cache_socket_timeout,
        observe=metrics.observe_cache,
    )
    resources = Resources(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        cache=StatusCache(cache_client, settings),
        store=open_store(settings, fsync=settings.storage_fsync),
        queue=JobQueue.from_settings(settings),
        metrics=metrics,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await resources.close()

    # FastAPI's own /docs loads Swagger UI from a CDN (a blank page offline, as in a classroom
    # without internet); fastapi-offline serves the same pages from files in its wheel.
    app = FastAPIOffline(
        title="imgproc",
        summary="Asynchronous image processing: crop, grayscale, resize.",
        version="1.0.0",
        lifespan=lifespan,
        # No OpenTelemetry here (metrics are Prometheus'): with this off, FastAPI stops asking
        # the global OpenTelemetry providers (environment lookups) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    resources.attach(app)
    app.include_router(jobs_router)
    app.include_router(health_router)
    if settings.frontend_dir is not None:
        # `make run` only: the demo page on the API's origin (in compose, nginx serves it).
        app.mount("/ui", StaticFiles(directory=settings.frontend_dir, html=True), name="ui")
    _install_error_handlers(app)
    _document_body_rules(app)
    admission = Admission(
        # The cache's Redis (and its connection pool): rate limits are as expendable as the
        # cache, and fail open the same way.
        limiter=RateLimiter(cache_client.client, prefix=settings.redis_prefix),
        upload_rule=Rule.parse("upload", settings.rate_limit),
        read_rule=Rule.parse("read", settings.read_rate_limit),
        gauge=LoadGauge(engine, interval=settings.load_check_interval_seconds),
        bounds=Bounds(settings.max_queued_jobs, settings.max_queued_age_seconds),
        shed_retry_after=settings.shed_retry_after_seconds,
        upload_paths=UPLOAD_PATHS,
    )
    # Before `instrument` so that it runs inside the HTTP metrics: refusals are counted there.
    app.add_middleware(AdmissionMiddleware, admission=admission, metrics=metrics)
    instrument(app, registry)
    app.add_middleware(
        UploadLimitMiddleware,
        max_body_bytes=settings.max_upload_bytes + MULTIPART_SLACK,
        paths=UPLOAD_PATHS,
    )
    # Added last so it runs first: even a 413 from the upload limit carries a request id.
    app.add_middleware(RequestContextMiddleware)
    return app
