"""The FastAPI app: what the routes depend on, built once and kept on `app.state` (api/deps.py reads
it), the routers, the middleware and the error handlers."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import fastapi
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from llmsuite_common.clock import Clock, monotonic
from llmsuite_common.process_metrics import track_asyncio_tasks
from opentelemetry.trace import TracerProvider
from starlette.exceptions import HTTPException
from starlette.responses import Response

from .api.access_middleware import AccessMiddleware
from .api.body_limit import BodySizeLimitMiddleware, BodyTooLarge, too_large
from .api.database_busy import DatabaseBusyMiddleware
from .api.errors import ApiError, anthropic_envelope, error_response, shape_for
from .api.guardrails_summary import GuardrailsHeaderMiddleware
from .api.request_tracing import RequestTracing
from .api.routes import (
    admin,
    chat,
    console,
    legacy_completions,
    me,
    messages,
    models,
    ops,
    requests,
    retrieval,
    tokens,
    usage,
    ws,
)
from .api.routes.responses import router as responses_router
from .api.sse_response import StreamSendMiddleware
from .api.text_guard import TextGuardMiddleware
from .api.validation import validation_error
from .db import Database
from .edge.admission import EdgeChecks
from .edge.auth import ApiKeyMiddleware, Identity, key_id_for
from .edge.auth_failures import CAUSE as AUTH_FAILURES
from .edge.auth_failures import AuthFailures
from .edge.idempotency import Idempotency
from .edge.keys import KeyStore
from .edge.limits import LEASE_MARGIN_SECONDS, LimitConfig, Limiter
from .edge.metering import Metering
from .edge.policy import Policy
from .edge.request_edge import RequestEdge
from .edge.request_log_writer import RequestLogWriter
from .edge.response_store import MemoryResponseStore, PostgresResponseStore, ResponseStore
from .edge.result_cache import ResultCache
from .edge.shared_state import SharedState
from .edge.summaries import ModelSummarizer
from .edge.usage import UsageRecorder
from .lifecycle import Lifecycle
from .metrics import GatewayMetrics
from .pipeline.backend_health import BackendHealth
from .pipeline.chat import ChatPipeline
from .pipeline.clients import BackendClients
from .settings import GatewaySettings

# Of the shutdown budget, kept for closing clients, stores and the pool after the request log's last write.
EXIT_MARGIN_SECONDS = 1.0
# An idempotency claim outlives the request deadline by this much before another attempt may run.
IDEMPOTENCY_PENDING_MARGIN_SECONDS = 30.0


def bootstrap_identity(settings: GatewaySettings) -> Identity:
    """The configured key: an administrator of every organization, limited by the GATEWAY_KEY_*/ORG_* settings."""
    policy = Policy(
        key_rpm=settings.gateway_key_rpm,
        key_tpm=settings.gateway_key_tpm,
        key_max_streams=settings.gateway_key_max_streams,
        org_rpm=settings.gateway_org_rpm,
        org_tpm=settings.gateway_org_tpm,
    )
    key = settings.gateway_api_key.get_secret_value()
    return Identity(org_id=settings.gateway_org_id, key_id=key_id_for(key), policy=policy, superuser=True)


def request_edge(
    settings: GatewaySettings,
    shared: SharedState,
    metrics: GatewayMetrics,
    database: Database | None,
    clients: BackendClients | None = None,
    clock: Clock = monotonic,
) -> RequestEdge:
    timeout = settings.gateway_request_timeout_seconds
    config = LimitConfig(
        window_seconds=settings.gateway_rate_limit_window_seconds,
        ip_rpm=settings.gateway_ip_rpm,
        lease_seconds=timeout + LEASE_MARGIN_SECONDS,
        failure_mode=settings.gateway_rate_limit_failure_mode,
    )
    return RequestEdge(
        limiter=Limiter(
            shared.limits,
            config,
            on_refused=metrics.rate_limited,
            store_slots=shared.limiter_slots,
            clock=clock,
        ),
        idempotency=Idempotency(
            shared.kv,
            ttl_seconds=settings.gateway_idempotency_ttl_seconds,
            pending_seconds=timeout + IDEMPOTENCY_PENDING_MARGIN_SECONDS,
        ),
        cache=ResultCache(shared.cache, metrics.cache_lookups),
        checks=EdgeChecks(max_tokens_cap=0),
        usage=UsageRecorder(
            shared.kv,
            settings.gateway_prices,
            database=database,
            writer=request_log_writer(settings, metrics, database, clients),
            # Queued rows are written before exit, within the same grace as in-flight requests.
            drain_seconds=settings.shutdown_grace_seconds,
        ),
        streams_in_flight=metrics.streams_in_flight,
        reserved_completion_tokens=settings.gateway_reserved_completion_tokens,
    )


def response_store(settings: GatewaySettings, database: Database | None) -> ResponseStore:
    """The Responses API's kept responses: in PostgreSQL, or without one in process."""
    retention = settings.gateway_response_retention_days
    if database is not None:
        return PostgresResponseStore(database, retention_days=retention)
    return MemoryResponseStore(retention_days=retention, max_entries=settings.gateway_response_memory_max)


def request_log_writer(
    settings: GatewaySettings,
    metrics: GatewayMetrics,
    database: Database | None,
    clients: BackendClients | None,
) -> RequestLogWriter:
    summarizer = None
    if settings.gateway_summary_model and clients is not None:
        summarizer = ModelSummarizer(
            clients, settings.gateway_summary_model, timeout_seconds=settings.gateway_summary_timeout_seconds
        )
    return RequestLogWriter(
        database,
        flush_seconds=settings.gateway_usage_flush_seconds,
        queue_max=settings.gateway_usage_queue_max,
        metrics=metrics,
        summarizer=summarizer,
        retention_days=settings.gateway_request_log_retention_days,
    )


# Every error the gateway answers with, whatever its status (errors.envelope).
_ERROR_SCHEMA = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}


# Every error the Messages route family answers with (errors.anthropic_envelope).
_ANTHROPIC_ERROR_SCHEMA = {
    "title": "AnthropicErrorResponse",
    "type": "object",
    "required": ["type", "error"],
    "properties": {
        "type": {"const": "error"},
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "request_id": {"type": ["string", "null"]},
    },
}


_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_ANTHROPIC_ERROR_REF = {"$ref": "#/components/schemas/AnthropicErrorResponse"}


def _with_error_responses(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The OpenAPI document with the error envelope as every operation's 4XX and 5XX responses, in
    place of FastAPI's 422 HTTPValidationError, which the gateway never sends (validation fails with 400
    and the same envelope as every other error): OpenAI's, or Anthropic's on the Messages route."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        components["ErrorResponse"] = _ERROR_SCHEMA
        components["AnthropicErrorResponse"] = _ANTHROPIC_ERROR_SCHEMA
        for path, operations in schema.get("paths", {}).items():
            anthropic = shape_for(path) is anthropic_envelope
            error = {
                "description": "An error, as Anthropic reports one"
                if anthropic
                else "An error, as OpenAI reports one",
                "content": {
                    "application/json": {"schema": _ANTHROPIC_ERROR_REF if anthropic else _ERROR_REF}
                },
            }
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for statuses in ("4XX", "5XX"):
                    responses[statuses] = error
        return schema

    return openapi


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc, shape_for(request.url.path))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc.errors()), shape_for(request.url.path))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, BodyTooLarge):
        return error_response(too_large(request.app.state.max_body_bytes), shape_for(request.url.path))
    if exc.status_code == 404:
        err = ApiError(404, f"unknown route: {request.method} {request.url.path}", code="unknown_url")
    elif exc.status_code == 405:
        err = ApiError(405, f"method {request.method} is not allowed here", code="method_not_allowed")
    else:
        err = ApiError(exc.status_code, str(exc.detail))
    err.headers.update(exc.headers or {})
    return error_response(err, shape_for(request.url.path))


@dataclass(frozen=True)
class Gateway:
    """Everything one app holds, built once: what routes depend on, and what its lifespan opens and
    closes."""

    settings: GatewaySettings
    clients: BackendClients
    lifecycle: Lifecycle
    metrics: GatewayMetrics
    shared: SharedState
    pipeline: ChatPipeline
    edge: RequestEdge
    metering: Metering
    database: Database | None
    keys: KeyStore | None
    health: BackendHealth
    # The time of the in-process windows, TTLs and caches (limits, keys, stores); a test moves it.
    clock: Clock
    responses: ResponseStore

    @classmethod
    def build(
        cls,
        settings: GatewaySettings,
        clients: BackendClients,
        lifecycle: Lifecycle,
        metrics: GatewayMetrics,
        shared: SharedState,
        clock: Clock,
    ) -> "Gateway":
        database = Database(settings) if Database.configured(settings) else None
        edge = request_edge(settings, shared, metrics, database, clients, clock)
        keys = (
            KeyStore(
                database,
                cache_ttl_seconds=settings.gateway_key_cache_ttl_seconds,
                unknown_ttl_seconds=settings.gateway_unknown_key_cache_ttl_seconds,
                clock=clock,
            )
            if database
            else None
        )
        return cls(
            settings,
            clients,
            lifecycle,
            metrics,
            shared,
            pipeline=ChatPipeline(
                clients, default_model=settings.gateway_default_model, rule_metrics=metrics.rules
            ),
            edge=edge,
            metering=Metering(
                edge.limiter, edge.usage, trusted_proxy_hops=settings.gateway_trusted_proxy_hops
            ),
            database=database,
            keys=keys,
            health=BackendHealth(
                clients, metrics.backend_serving, settings.gateway_readiness_timeout_seconds
            ),
            clock=clock,
            responses=response_store(settings, database),
        )

    def keep_on(self, app: FastAPI) -> None:
        """What api/deps.py hands the routes."""
        state = app.state
        state.settings, state.clients, state.lifecycle, state.metrics = (
            self.settings,
            self.clients,
            self.lifecycle,
            self.metrics,
        )
        state.pipeline, state.edge, state.usage, state.metering, state.keys = (
            self.pipeline,
            self.edge,
            self.edge.usage,
            self.metering,
            self.keys,
        )
        state.health = self.health
        state.responses = self.responses
        state.token_issuer = self.clients.issuer
        state.max_body_bytes = self.settings.gateway_max_body_bytes

    def lifespan(self, app: FastAPI) -> AbstractAsyncContextManager[None]:
        return self._lifespan()

    @asynccontextmanager
    async def _lifespan(self) -> AsyncIterator[None]:
        settings, database, usage = self.settings, self.database, self.edge.usage
        track_asyncio_tasks(self.metrics.registry)
        if database is not None and self.keys is not None:
            await database.open()
            await self.keys.ensure_org(settings.gateway_org_id)
        usage.start()
        self.responses.start()
        await self.clients.open()
        self.health.start(settings.gateway_backend_health_interval_seconds)
        try:
            yield
        finally:
            await self.health.stop()
            # Within what SIGTERM left of the shutdown budget, less the closing steps below.
            budget = self.lifecycle.seconds_left(settings.shutdown_grace_seconds) - EXIT_MARGIN_SECONDS
            await usage.stop(budget)
            await self.responses.stop()
            await self.clients.close()
            await self.shared.close()
            if database is not None:
                await database.close()


def create_app(
    settings: GatewaySettings,
    clients: BackendClients,
    *,
    lifecycle: Lifecycle | None = None,
    metrics: GatewayMetrics | None = None,
    shared: SharedState | None = None,
    tracer_provider: TracerProvider | None = None,
    # The time of the in-process windows, TTLs and caches (limits, keys, stores); a test moves it.
    clock: Clock = monotonic,
) -> FastAPI:
    if tracer_provider is not None:
        clients.tracer_provider = tracer_provider
    gateway = Gateway.build(
        settings,
        clients,
        lifecycle or Lifecycle(),
        metrics or GatewayMetrics(),
        shared or SharedState.from_settings(settings, clock=clock),
        clock,
    )
    # FastAPI's native telemetry stays off so there is one tracing path (RequestTracing, with the
    # probe exclusions), and so its logs never record request bodies.
    app = fastapi.FastAPI(
        title="llmsuite gateway",
        openapi_url="/openapi.json" if settings.gateway_openapi_enabled else None,
        redoc_url=None,
        lifespan=gateway.lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        exception_handlers={
            ApiError: _api_error,
            RequestValidationError: _invalid_request,
            HTTPException: _http_error,
        },
    )
    app.openapi = _with_error_responses(app)  # type: ignore[method-assign]
    gateway.keep_on(app)
    include_routers(app, settings)
    add_middleware(app, gateway, tracer_provider)
    return app


def include_routers(app: FastAPI, settings: GatewaySettings) -> None:
    app.include_router(chat.router)
    app.include_router(messages.router)
    app.include_router(legacy_completions.router)
    app.include_router(responses_router)
    app.include_router(models.router)
    if settings.gateway_admin_api_enabled:
        app.include_router(admin.router)
    app.include_router(usage.router)
    app.include_router(requests.router)
    app.include_router(me.router)
    app.include_router(ws.router)
    app.include_router(ops.router)
    app.include_router(retrieval.router)
    app.include_router(tokens.router)
    if settings.gateway_console_enabled:
        app.include_router(console.router)


def add_middleware(app: FastAPI, gateway: Gateway, tracer_provider: TracerProvider | None) -> None:
    settings, shared = gateway.settings, gateway.shared
    # Added innermost first: stream send (outermost) -> tracing -> access log -> body limit ->
    # database busy -> API key -> text guard -> guardrails header -> routes.
    app.add_middleware(GuardrailsHeaderMiddleware)
    # After authentication: a body is read and checked only for a known key.
    app.add_middleware(TextGuardMiddleware)
    app.add_middleware(
        ApiKeyMiddleware,
        bootstrap=bootstrap_identity(settings),
        api_key=settings.gateway_api_key.get_secret_value(),
        keys=gateway.keys,
        failures=AuthFailures(
            shared.limits,
            limit=settings.gateway_ip_auth_failures,
            window_seconds=settings.gateway_rate_limit_window_seconds,
            clock=gateway.clock,
            on_refused=gateway.metrics.rate_limited.labels(AUTH_FAILURES).inc,
        ),
        trusted_proxy_hops=settings.gateway_trusted_proxy_hops,
    )
    # Outside the API key check, which may wait for a pooled database connection itself.
    app.add_middleware(DatabaseBusyMiddleware)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.gateway_max_body_bytes,
        read_timeout_seconds=settings.gateway_body_timeout_seconds,
    )
    app.add_middleware(AccessMiddleware, metrics=gateway.metrics)
    # The request span is current for everything inside.
    app.add_middleware(RequestTracing, tracer_provider=tracer_provider)
    # Outermost: streamed events skip the wrappers inside (they only watch a response's start).
    app.add_middleware(StreamSendMiddleware)
