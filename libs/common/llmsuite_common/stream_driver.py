"""The one server interceptor every service runs: tracing, metrics, error mapping and the writes.

Each piece of per-call work (the server span with the caller's trace context, the request id
for logs, the call's metrics, turning exceptions into statuses) is done once per call, around
the handler. A server-streaming handler's messages go straight from its generator to
`context.write`, with nothing in between: stacking one interceptor per concern made every
streamed message cross one generator per interceptor (and OpenTelemetry's object proxy around
the context), which cost more than the message's own handling.

The driver iterates the handler's generator itself, in the call's own task and context. When a
call ends early (client cancel, deadline, a write into a dead stream) the generator is closed
here at once, so whatever it holds (an upstream HTTP connection) is released now rather than
when the garbage collector finds it.
"""

import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import unquote

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from .call_auth import CallAuthenticator, caller_var
from .errors import _UNDECODABLE, InvalidArgument, _abort, _request_id, _tolerant
from .grpc_metrics import GrpcServerMetrics, _code, is_metered
from .request_context import request_id_var
from .telemetry import not_health_check

_TRACER_NAME = "llmsuite_common.grpc_server"
# The statuses OpenTelemetry's gRPC instrumentation marks a server span as failed for: the
# server's own faults, not the caller's (INVALID_ARGUMENT, NOT_FOUND, ... stay unset).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class _Call:
    """What one call needs at its start and end, worked out once from its details."""

    __slots__ = ("method", "request_id", "metadata", "traced", "metered", "authenticated")

    def __init__(
        self, details: grpc.HandlerCallDetails, traced: bool, metered: bool, authenticated: bool
    ) -> None:
        self.method: str = details.method
        self.metadata = details.invocation_metadata or ()
        self.request_id = _request_id(details)
        self.traced = traced
        self.metered = metered
        self.authenticated = authenticated


class ServerCallInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc.aio is untyped
    """Tracing span, request id, metrics, error-to-status mapping and stream writes, per call.

    - A server span per call (not for health checks), child of the trace context in the call's
      metadata, with OpenTelemetry's gRPC attributes and status rules.
    - `llmsuite_grpc_server_handled` / `_handling_seconds` by the status the call ended with
      (not for health checks or reflection).
    - ServiceError -> its status with an ErrorDetail trailer; a failed downstream gRPC call ->
      its code; anything else -> INTERNAL with nothing of its text. Undecodable requests ->
      INVALID_ARGUMENT.
    - The caller's x-request-id bound for logs while the handler runs.
    - The caller's credential verified (all but health checks and open reflection) and the
      caller bound for the handler (call_auth.caller_var); without an authenticator no call
      has a caller, so every tenant's data is refused.
    """

    def __init__(
        self,
        metrics: GrpcServerMetrics | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        trace_filter: Callable[[grpc.HandlerCallDetails], bool] = not_health_check,
        authenticator: CallAuthenticator | None = None,
    ) -> None:
        self._metrics = metrics
        self._auth = authenticator
        self._tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)
        self._trace_filter = trace_filter

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        call = _Call(
            handler_call_details,
            traced=is_instrumentation_enabled() and self._trace_filter(handler_call_details),
            metered=self._metrics is not None and is_metered(handler_call_details.method),
            authenticated=self._auth is not None and not self._auth.is_open(handler_call_details.method),
        )
        replaced: dict[str, Any]
        if handler.unary_unary is not None:
            replaced = {"unary_unary": self._unary(handler.unary_unary, call)}
        elif handler.stream_unary is not None:
            replaced = {"stream_unary": self._unary(handler.stream_unary, call)}
        elif handler.unary_stream is not None:
            replaced = {"unary_stream": self._stream(handler.unary_stream, call)}
        elif handler.stream_stream is not None:
            replaced = {"stream_stream": self._stream(handler.stream_stream, call)}
        else:
            return handler
        replaced["request_deserializer"] = _tolerant(
            handler.request_deserializer, streaming=handler.request_streaming
        )
        return handler._replace(**replaced)

    # Per call: begin() before the handler, end() after it, both in the call's task.

    def _begin(self, call: _Call, context: grpc.aio.ServicerContext) -> tuple[Any, Any, Any]:
        request_token = request_id_var.set(call.request_id)
        span = context_token = None
        if call.traced:
            carrier = {m.key: m.value for m in call.metadata} if call.metadata else {}
            parent = propagate.extract(carrier) if carrier else None
            span = self._tracer.start_span(
                call.method, parent, SpanKind.SERVER, _span_attributes(call, carrier, context)
            )
            context_token = otel_context.attach(trace.set_span_in_context(span, parent))
        return request_token, span, context_token

    def _end(
        self,
        call: _Call,
        context: grpc.aio.ServicerContext,
        started: float,
        code: grpc.StatusCode,
        begun: tuple[Any, Any, Any],
    ) -> None:
        request_token, span, context_token = begun
        if call.metered:
            self._metrics.observe(call.method, code, time.perf_counter() - started)  # type: ignore[union-attr]
        if span is not None:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code in _SERVER_FAULTS:
                span.set_status(Status(StatusCode.ERROR, f"{code}:{context.details() or ''}"))
            span.end()
            otel_context.detach(context_token)
        # A handler that outlived its context (never the case here) must not fail the call.
        with contextlib.suppress(ValueError):
            request_id_var.reset(request_token)

    def _unary(self, behavior: Callable[..., Awaitable[Any]], call: _Call) -> Callable[..., Awaitable[Any]]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            begun = self._begin(call, context)
            code = grpc.StatusCode.UNKNOWN
            try:
                if call.authenticated:
                    caller_var.set(self._auth.caller(call.metadata))  # type: ignore[union-attr]
                if request is _UNDECODABLE:
                    raise InvalidArgument("request message could not be parsed", code="invalid_message")
                result = await behavior(request, context)
                code = _code(context)
                return result
            except grpc.aio.AbortError:
                code = _code(context)
                raise
            except Exception as exc:  # noqa: BLE001 - every failure must become a status
                try:
                    await _abort(context, exc)  # always raises: AbortError once the status is sent
                finally:
                    code = _code(context)
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                self._end(call, context, started, code, begun)

        return unary

    def _stream(self, behavior: Callable[..., Any], call: _Call) -> Callable[..., Awaitable[None]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> None:
            started = time.perf_counter()
            begun = self._begin(call, context)
            code = grpc.StatusCode.UNKNOWN
            writing = False
            try:
                if call.authenticated:
                    caller_var.set(self._auth.caller(call.metadata))  # type: ignore[union-attr]
                if request is _UNDECODABLE:
                    raise InvalidArgument("request message could not be parsed", code="invalid_message")
                responses = behavior(request, context)
                if inspect.isawaitable(responses):
                    # A reader/writer-style handler writes for itself.
                    await responses
                else:
                    write = context.write
                    try:
                        async for response in responses:
                            writing = True
                            await write(response)
                            writing = False
                    finally:
                        if hasattr(responses, "aclose"):
                            await responses.aclose()
                code = _code(context)
            except grpc.aio.AbortError:
                code = _code(context)
                raise
            except Exception as exc:  # noqa: BLE001
                if writing:
                    # The stream is gone (the caller left, or the server is stopping): nothing
                    # can be told to the caller any more.
                    code = grpc.StatusCode.CANCELLED
                    raise
                try:
                    await _abort(context, exc)
                finally:
                    code = _code(context)
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                self._end(call, context, started, code, begun)

        return stream


def _span_attributes(
    call: _Call, metadata: dict[str, str], context: grpc.aio.ServicerContext
) -> dict[str, Any]:
    """OpenTelemetry's gRPC server span attributes."""
    service, _, method = call.method.lstrip("/").partition("/")
    attributes: dict[str, Any] = {
        "rpc.system": "grpc",
        "rpc.grpc.status_code": grpc.StatusCode.OK.value[0],
        "rpc.method": method,
        "rpc.service": service,
    }
    if "user-agent" in metadata:
        attributes["rpc.user_agent"] = metadata["user-agent"]
    peer = context.peer() or ""
    # ipv4:127.0.0.1:57284, ipv6:[::1]:57284, ipv4:10.2.1.1:57284,127.0.0.1:57284
    if not peer.startswith("unix:"):
        address = peer.split(",")[0].partition(":")[2]
        ip, colon, port = address.rpartition(":")
        if colon and ip:
            ip = unquote(ip)
            attributes["net.peer.ip"] = ip
            attributes["net.peer.port"] = port
            if ip in ("[::1]", "127.0.0.1"):
                attributes["net.peer.name"] = "localhost"
    return attributes


def server_interceptors(
    metrics: GrpcServerMetrics | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
    authenticator: CallAuthenticator | None = None,
) -> Sequence[grpc.aio.ServerInterceptor]:
    """What serve() installs, for tests that start a server of their own."""
    return [ServerCallInterceptor(metrics, tracer_provider=tracer_provider, authenticator=authenticator)]
