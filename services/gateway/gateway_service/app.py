"""The FastAPI app: routes, middleware and error handlers, with every dependency passed in."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import fastapi
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .access_middleware import AccessMiddleware
from .auth import ApiKeyMiddleware
from .body_limit import BodySizeLimitMiddleware, BodyTooLarge, too_large
from .chat import ChatPipeline
from .clients import BackendClients
from .errors import ApiError, error_response
from .lifecycle import Lifecycle
from .metrics import GatewayMetrics
from .routes.chat import chat_router
from .routes.models import models_router
from .routes.ops import ops_router
from .settings import GatewaySettings
from .validation import validation_error


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, BodyTooLarge):
        return error_response(too_large(request.app.state.max_body_bytes))
    if exc.status_code == 404:
        err = ApiError(404, f"unknown route: {request.method} {request.url.path}", code="unknown_url")
    elif exc.status_code == 405:
        err = ApiError(405, f"method {request.method} is not allowed here", code="method_not_allowed")
    else:
        err = ApiError(exc.status_code, str(exc.detail))
    err.headers.update(exc.headers or {})
    return error_response(err)


def create_app(
    settings: GatewaySettings,
    clients: BackendClients,
    *,
    lifecycle: Lifecycle | None = None,
    metrics: GatewayMetrics | None = None,
) -> FastAPI:
    lifecycle = lifecycle or Lifecycle()
    metrics = metrics or GatewayMetrics()
    pipeline = ChatPipeline(clients, default_model=settings.gateway_default_model)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await clients.open()
        try:
            yield
        finally:
            await clients.close()

    # Looked up at call time: FastAPIInstrumentor().instrument() swaps in its traced subclass.
    # FastAPI's native telemetry stays off so there is one tracing path (with the probe exclusions),
    # and so its logs never record request bodies.
    app = fastapi.FastAPI(
        title="llmsuite gateway",
        openapi_url="/openapi.json" if settings.gateway_openapi_enabled else None,
        redoc_url=None,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        exception_handlers={
            ApiError: _api_error,
            RequestValidationError: _invalid_request,
            HTTPException: _http_error,
        },
    )
    app.state.max_body_bytes = settings.gateway_max_body_bytes
    app.include_router(chat_router(pipeline, settings, metrics))
    app.include_router(models_router(pipeline, settings))
    app.include_router(ops_router(clients, settings, metrics, lifecycle))

    # Added innermost first: access log (outermost) -> body limit -> API key -> routes.
    app.add_middleware(
        ApiKeyMiddleware,
        api_key=settings.gateway_api_key.get_secret_value(),
        org_id=settings.gateway_org_id,
    )
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.gateway_max_body_bytes)
    app.add_middleware(AccessMiddleware, metrics=metrics)
    return app
