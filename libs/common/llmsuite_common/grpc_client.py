"""Channels to other llmsuite services, and the client span of every call made through them.

A stub wrapped in TracedStub starts each call under a CLIENT span, child of the current span,
with the trace context in W3C headers (OpenTelemetry's propagator); the span ends with the call's
status when the call is done, however it ends. This is done where the call is made rather than
by a channel interceptor: grpc.aio runs every intercepted call in an extra task, and every
message of an intercepted stream through an extra generator, which cost more than the span.
"""

import json
from typing import Any

import grpc
from grpc import _common
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from .call_auth import AUTHORIZATION_METADATA_KEY, CallCredentials
from .request_context import REQUEST_ID_METADATA_KEY, request_id_var

_TRACER_NAME = "llmsuite_common.grpc_client"

# The health service name callers balance on: a server (grpc_server.serve) reports it SERVING from
# when it has loaded until its drain has ended, whereas "" (what probes and other load balancers
# read) turns NOT_SERVING as soon as the drain begins. Callers of a draining replica thus go on
# being served for DRAIN_SECONDS while they find and connect to the replicas that replace it.
BALANCER_HEALTH_SERVICE = "llmsuite.balancer"
# round_robin over every address the target resolves to, each address only while its health
# service reports BALANCER_HEALTH_SERVICE as SERVING (client-side health checking, gRFC A17: one
# Watch stream per connection): a replica still loading listens but takes no calls, and one
# whose drain has ended takes none before its listener closes. A server without the health
# service counts as serving; one with it must report that name (every llmsuite server does).
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": BALANCER_HEALTH_SERVICE},
}
# A lost connection is tried again within this long, however long the address has been down
# (gRPC's default backoff grows to 120 s): a replica restarted on its address takes calls again
# about as soon as it serves, not minutes later.
MAX_RECONNECT_BACKOFF_MS = 1_000


def channel(
    target: str,
    *,
    max_message_bytes: int = 4 * 1024 * 1024,
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.aio.Channel:
    """A channel that spreads calls over every address `target` resolves to that reports SERVING
    (SERVICE_CONFIG); TLS with `credentials`.

    Use `dns:///name:port` with a headless Service so each pod gets its share, or a fixed list,
    `ipv4:127.0.0.1:50061,127.0.0.1:50071`.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        # This configuration, never one from a DNS TXT record.
        ("grpc.service_config_disable_resolution", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.enable_retries", 1),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ]
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.aio.insecure_channel(target, options=options)


def call_metadata() -> tuple[tuple[str, str], ...]:
    request_id = request_id_var.get()
    return ((REQUEST_ID_METADATA_KEY, request_id),) if request_id else ()


def _method_name(method: str | bytes) -> str:
    # grpc.aio multicallables hold the method name as bytes
    return method.decode() if isinstance(method, bytes) else method


def _attributes(method: str) -> dict[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}


def _with_trace_headers(metadata: Any) -> list[tuple[str, str]]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [*(metadata or ()), *carrier.items()]


def _end(span: Span, code: grpc.StatusCode, details: str | None = None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code is not grpc.StatusCode.OK:
        span.set_status(Status(StatusCode.ERROR, f"{code.name}: {details or ''}"))
    span.end()


def _final_status(call: Any) -> tuple[grpc.StatusCode, str | None]:
    """A finished call's status without awaiting (done callbacks cannot await); grpc.aio reads the
    same field when it raises for a failed call."""
    if call.cancelled():
        return grpc.StatusCode.CANCELLED, None
    try:
        status = call._cython_call._status
        return _common.CYGRPC_STATUS_CODE_TO_STATUS_CODE[status.code()], status.details()
    except (AttributeError, KeyError):
        return grpc.StatusCode.UNKNOWN, "status unavailable"


def _traced_call(
    tracer: trace.Tracer,
    method: Any,
    request: Any,
    timeout: float | None,
    metadata: Any,
    authorization: str | None = None,
) -> Any:
    """Starts a call (any kind) under a CLIENT span, child of the current span, and returns the
    grpc.aio call; the span ends with the call's status when the call is done."""
    name = _method_name(getattr(method, "_method", b"")) or "grpc.call"
    span = tracer.start_span(name, kind=SpanKind.CLIENT, attributes=_attributes(name))
    with trace.use_span(span, end_on_exit=False):
        headers = _with_trace_headers(call_metadata() if metadata is None else metadata)
    if authorization is not None:
        headers.append((AUTHORIZATION_METADATA_KEY, authorization))
    try:
        call = method(request, timeout=timeout, metadata=headers)
    except BaseException:
        span.set_status(Status(StatusCode.ERROR))
        span.end()
        raise
    call.add_done_callback(lambda done: _end(span, *_final_status(done)))
    return call


class TracedStub:
    """A generated stub whose every call is traced (_traced_call) and, with `credentials`, carries
    a token for `audience` (the called service's name); use it like the stub."""

    def __init__(
        self,
        stub: Any,
        tracer_provider: TracerProvider | None = None,
        *,
        audience: str = "",
        credentials: CallCredentials | None = None,
    ) -> None:
        self._stub = stub
        self._audience = audience
        self._credentials = credentials
        # Without a provider this is the global one's, through OpenTelemetry's proxy: telemetry may
        # be set up after the stub is made.
        self._tracer = trace.get_tracer(_TRACER_NAME, tracer_provider=tracer_provider)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._stub, name)

        credentials, audience = self._credentials, self._audience

        def call(request: Any, *, timeout: float | None = None, metadata: Any = None) -> Any:
            authorization = credentials.authorization(audience) if credentials is not None else None
            return _traced_call(self._tracer, method, request, timeout, metadata, authorization)

        return call
