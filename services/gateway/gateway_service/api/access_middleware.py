"""Request id, access log, request metrics, Server-Timing, error classes and the last-resort 500 for
every HTTP request."""

import logging
import time

from llmsuite_common.exemplars import trace_exemplar
from llmsuite_common.request_context import REQUEST_ID_METADATA_KEY, request_id_var
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..metrics import GatewayMetrics
from ..pipeline import downstream
from . import server_timing
from .disconnect import CLIENT_CLOSED_REQUEST
from .errors import CANCELLED, ApiError, close_error_note, error_response, open_error_note, shape_for
from .request_id import request_id_from

log = logging.getLogger("gateway.access")

_HEADER = REQUEST_ID_METADATA_KEY.encode()
OVERHEAD_HEADER = b"x-gateway-overhead-ms"
UNMATCHED_ROUTE = "unmatched"
# API answers are data, never pages: a browser must not sniff them into HTML, frame them or keep a
# copy (a response may hold a conversation or a new key's secret). Routes may set their own
# cache-control (e.g. a cacheable model list); the rest are added when absent.
API_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
_CACHE_CONTROL = (b"cache-control", b"no-store")
MAX_LOGGED_PATH = 256


def api_security_headers(present: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The security headers an API response lacks."""
    names = {name.lower() for name, _ in present}
    wanted = (*API_SECURITY_HEADERS, _CACHE_CONTROL)
    return [(name, value) for name, value in wanted if name not in names]


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        header = next((v for k, v in scope["headers"] if k == _HEADER), None)
        request_id = request_id_from(header)
        token = request_id_var.set(request_id)
        status = 500
        response_started = False

        tally = downstream.open_tally()
        hops = server_timing.open_hops()
        error_note = open_error_note()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                # Up to the response headers: for a stream that is its first token.
                overhead = max(0.0, time.perf_counter() - started - downstream.waited_seconds())
                headers = [
                    *message.get("headers", ()),
                    (_HEADER, request_id.encode()),
                    (OVERHEAD_HEADER, f"{overhead * 1000:.3f}".encode()),
                ]
                if scope["path"].startswith("/v1/"):
                    headers.extend(api_security_headers(headers))
                    self.metrics.overhead.observe(overhead)
                    timings = server_timing.current()
                    if timings is not None:
                        headers.append((server_timing.HEADER, timings.header(overhead)))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - no stack trace may reach a client
            log.exception("unhandled error")
            if not response_started:
                internal = ApiError(500, "internal error", code="internal_error")
                await error_response(internal, shape_for(scope["path"]))(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or UNMATCHED_ROUTE
            self.metrics.observe_request(route_path, scope["method"], status, seconds, trace_exemplar())
            error_class = close_error_note(error_note)
            if status == CLIENT_CLOSED_REQUEST:
                error_class = error_class or CANCELLED
            if error_class is not None:
                self.metrics.errors.labels(error_class).inc()
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"][:MAX_LOGGED_PATH],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
            request_id_var.reset(token)
            server_timing.close_hops(hops)
            downstream.close_tally(tally)
