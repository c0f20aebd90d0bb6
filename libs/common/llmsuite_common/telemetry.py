"""OpenTelemetry setup. Context propagation is left to the standard instrumentations."""

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, Sampler

from .logs import setup_logging
from .settings import ServiceSettings

_provider: TracerProvider | None = None


_HEALTH_SERVICE = "grpc.health.v1.Health"


def not_health_check(details: object) -> bool:
    """True for every gRPC call but the health service's: the tracing filter of clients and servers.

    Means the same as `filters.negate(filters.health_check())`, which costs tens of microseconds a
    call (ABC and Protocol isinstance checks, os.path.split and normpath of the method name).
    """
    method = getattr(details, "method", "")
    if isinstance(method, bytes):  # grpc.aio client call details carry bytes (grpc issue 31092)
        method = method.decode()
    return not method.lstrip("/").startswith(_HEALTH_SERVICE)


def _exporter(settings: ServiceSettings):  # type: ignore[no-untyped-def]
    if settings.otel_exporter_otlp_protocol.startswith("http"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return OTLPSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

    return GrpcExporter(endpoint=settings.otel_exporter_otlp_endpoint, insecure=True)


def setup_telemetry(settings: ServiceSettings) -> TracerProvider:
    """Logging, tracer provider and the instrumentations every service uses.

    gRPC clients get their spans from llmsuite_common.grpc_client (a unary interceptor on
    channel(), traced_stream for streamed responses) and gRPC servers from serve()'s
    ServerCallInterceptor (stream_driver.py): neither from an instrumentor, whose stream
    wrappers every streamed message would cross.
    """
    global _provider
    setup_logging(settings.otel_service_name, settings.log_level)
    provider = tracer_provider(settings)
    if settings.otel_exporter_otlp_endpoint:
        provider.add_span_processor(BatchSpanProcessor(_exporter(settings)))
    trace.set_tracer_provider(provider)
    _provider = provider

    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    # gRPC client spans come from llmsuite_common.grpc_client (channel() and traced_stream).
    HTTPXClientInstrumentor().instrument()
    return provider


def tracer_provider(settings: ServiceSettings) -> TracerProvider:
    """The service's provider, without its exporter."""
    return TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name}), sampler=_sampler(settings)
    )


def _sampler(settings: ServiceSettings) -> Sampler | None:
    """None: the SDK's own, from OTEL_TRACES_SAMPLER. Without an exporter, new traces are not
    recorded (their spans could only be dropped): every span still has its ids, which logs, the
    request log and the `traceparent` of backend calls carry, and a caller's sampled decision is
    still followed, so a trace that another hop exports is not cut in half here."""
    if settings.otel_exporter_otlp_endpoint:
        return None
    return ParentBased(ALWAYS_OFF)


def shutdown_telemetry() -> None:
    if _provider is not None:
        _provider.shutdown()
