"""Prometheus metrics for every gRPC server: calls and latency by method and status code."""

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

# Generation streams for tens of seconds; the upper buckets keep those visible.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GrpcServerMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.handled = Counter(
            "llmsuite_grpc_server_handled",
            "gRPC calls completed, by method and status code.",
            ["grpc_service", "grpc_method", "grpc_code"],
            registry=registry,
        )
        self.seconds = Histogram(
            "llmsuite_grpc_server_handling_seconds",
            "Time from call start to its last message, by method.",
            ["grpc_service", "grpc_method"],
            buckets=_BUCKETS,
            registry=registry,
        )

    def observe(self, full_method: str, code: grpc.StatusCode, seconds: float) -> None:
        service, _, method = full_method.strip("/").partition("/")
        self.handled.labels(service, method, code.name).inc()
        self.seconds.labels(service, method).observe(seconds)


def is_metered(method: str) -> bool:
    """Calls the metrics count: every one but health checks and reflection."""
    return not (method.startswith("/grpc.health.v1.") or method.startswith("/grpc.reflection."))


def _code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics of the default registry on its own port; returns the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_address[1])
