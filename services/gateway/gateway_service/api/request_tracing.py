"""One SERVER span per HTTP or WebSocket request, continuing the caller's trace.

OpenTelemetry's ASGI middleware does the same but also works on every message a response sends
(the current span set and reset, the response propagator asked, status re-read), which a streamed
answer pays once per chunk. Here the per-request work happens once: the span starts before the
app runs, takes the status from the response start, is named by the matched route and ends when
the app returns. Probes and scrapes are not traced.

A recorded request's response names its trace in a `traceresponse` header (W3C Trace Context
Level 2), so a client (the console, a curl user) can open the trace the request made.
"""

from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
TRACERESPONSE_HEADER = b"traceresponse"


def traceresponse(span: trace.Span) -> bytes:
    """`00-<trace id>-<span id>-<flags>`: this request's SERVER span."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode()


class _HeaderGetter(Getter[Scope]):
    """Reads W3C trace headers straight from the ASGI scope's raw header list."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        wanted = key.lower().encode()
        values = [v.decode("latin-1") for k, v in carrier.get("headers", ()) if k == wanted]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier.get("headers", ())]


_GETTER = _HeaderGetter()


class RequestTracing:
    def __init__(self, app: ASGIApp, tracer_provider: TracerProvider | None = None) -> None:
        self.app = app
        self._tracer = trace.get_tracer(__name__, tracer_provider=tracer_provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET") if kind == "http" else "WEBSOCKET"
        parent = propagate.extract(scope, getter=_GETTER)
        span = self._tracer.start_span(
            f"{method} {scope['path']}" if kind == "http" else scope["path"],
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": scope["path"],
                "url.scheme": scope.get("scheme", "http"),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))
        started = False

        async def traced_send(message: Message) -> None:
            nonlocal started
            if not started and message["type"] == "http.response.start":
                started = True
                status = message["status"]
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                headers = [*message.get("headers", ()), (TRACERESPONSE_HEADER, traceresponse(span))]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, traced_send if span.is_recording() else send)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            route = getattr(scope.get("route"), "path", None)
            if route:
                span.set_attribute("http.route", route)
                span.update_name(f"{method} {route}" if kind == "http" else route)
            context.detach(token)
            span.end()
