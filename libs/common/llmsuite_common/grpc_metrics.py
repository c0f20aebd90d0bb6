"""Prometheus metrics for every gRPC server: calls and latency by method and status code."""

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

from .handlers import wrap_behavior

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


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """The metrics alone, for a server without serve()'s ServerCallInterceptor (which records the same).

    Sits outside the error interceptor, so it sees the status that one settled on.
    """

    def __init__(self, metrics: GrpcServerMetrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not is_metered(method):
            return handler
        return wrap_behavior(
            handler,
            unary=lambda fn: self._unary(fn, method),
            stream=lambda fn: self._stream(fn, method),
        )

    def _unary(self, fn: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Awaitable[Any]]:
        metrics = self._metrics

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                result = await fn(request, context)
                code = _code(context)
                return result
            except grpc.aio.AbortError:
                code = _code(context)
                raise
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                metrics.observe(method, code, time.perf_counter() - start)

        return wrapper

    def _stream(
        self, fn: Callable[..., AsyncIterator[Any]], method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        metrics = self._metrics

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start = time.perf_counter()
            code = grpc.StatusCode.UNKNOWN
            try:
                async with contextlib.aclosing(fn(request, context)) as items:
                    async for item in items:
                        yield item
                code = _code(context)
            except grpc.aio.AbortError:
                code = _code(context)
                raise
            except BaseException:
                code = grpc.StatusCode.CANCELLED
                raise
            finally:
                metrics.observe(method, code, time.perf_counter() - start)

        return wrapper


def start_metrics_server(host: str, port: int) -> int:
    """Serve /metrics of the default registry on its own port; returns the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return int(server.server_address[1])
