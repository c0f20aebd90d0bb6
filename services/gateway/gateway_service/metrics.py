"""Prometheus metrics of one gateway app, in their own registry so apps never share counters."""

from llmsuite_common.rules.metrics import RuleMetrics
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder

from .api.errors import ERROR_CLASSES

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)


class GatewayMetrics:
    """The gateway's metrics, in groups (in exposition order): HTTP traffic, streams, the edge, the
    request log's writer, and what responses cost and failed with. Each is an attribute of its own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # The output rail's checks, under the names guardrails uses for its own surfaces.
        self.rules = RuleMetrics(self.registry)
        self._traffic()
        self._streams()
        self._edge()
        self._request_log()
        self._responses()

    def _traffic(self) -> None:
        self.requests = Counter(
            "llmsuite_gateway_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "llmsuite_gateway_request_duration_seconds",
            "Time from request start to the last response byte, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def _streams(self) -> None:
        self.streams_in_flight = Gauge(
            "llmsuite_gateway_streams_in_flight",
            "Server-sent event streams currently open.",
            registry=self.registry,
        )
        self.time_to_first_token = Histogram(
            "llmsuite_gateway_time_to_first_token_seconds",
            "Time from request start to the first generated token.",
            ["stream"],
            buckets=_TTFT_BUCKETS,
            registry=self.registry,
        )

    def _edge(self) -> None:
        self.backend_serving = Gauge(
            "llmsuite_gateway_backend_serving",
            "1 while a backend's gRPC health check answers SERVING, else 0 (checked by /readyz and "
            "every GATEWAY_BACKEND_HEALTH_INTERVAL_SECONDS).",
            ["backend"],
            registry=self.registry,
        )
        self.cache_lookups = Counter(
            "llmsuite_gateway_cache_lookups",
            "Result-cache lookups by outcome (hit or miss); the hit rate is hit / (hit + miss).",
            ["outcome"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "llmsuite_gateway_rate_limited",
            "Requests refused with 429, by cause.",
            ["cause"],
            registry=self.registry,
        )

    def _request_log(self) -> None:
        # The request log's writer (request_log_writer.py): depth at its bound refuses new requests.
        self.usage_queue_depth = Gauge(
            "llmsuite_gateway_usage_queue_depth",
            "Request-log rows waiting to be written to the database.",
            registry=self.registry,
        )
        self.usage_rows_written = Counter(
            "llmsuite_gateway_usage_rows_written",
            "Request-log rows written to the database.",
            registry=self.registry,
        )
        self.usage_write_failures = Counter(
            "llmsuite_gateway_usage_write_failures",
            "Failed request-log batch writes (the rows are kept and retried).",
            registry=self.registry,
        )
        self.usage_rows_sanitized = Counter(
            "llmsuite_gateway_usage_rows_sanitized",
            "Request-log rows stored with NUL characters or lone surrogates replaced by U+FFFD.",
            registry=self.registry,
        )
        self.usage_rows_dropped = Counter(
            "llmsuite_gateway_usage_rows_dropped",
            "Request-log rows never stored, by reason: `rejected` (the database refused the row "
            "itself), `shutdown` (not written within the shutdown grace).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("rejected", "shutdown"):
            self.usage_rows_dropped.labels(reason)

    def _responses(self) -> None:
        self.overhead = Histogram(
            "llmsuite_gateway_overhead_seconds",
            "Time a request spent in the gateway itself, excluding waits on backend services, "
            "up to the response headers.",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self.errors = Counter(
            "llmsuite_gateway_errors",
            "Errors answered to clients, by class: " + ", ".join(ERROR_CLASSES) + ".",
            ["class"],
            registry=self.registry,
        )
        for error_class in ERROR_CLASSES:
            # Every class is exported from the start, so rates and deltas never miss a first error.
            self.errors.labels(error_class)

    def observe_request(
        self, route: str, method: str, status: int, seconds: float, exemplar: dict[str, str] | None = None
    ) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.request_duration.labels(route, method).observe(seconds, exemplar)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def negotiate(self, accept: str | None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics (the format that carries exemplars) when
        the scraper's Accept header asks for it, else the Prometheus text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
