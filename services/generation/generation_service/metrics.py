"""Generation's Prometheus metrics, in the process registry the metrics listener serves."""

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

# An upstream attempt lasts from a refused connection (milliseconds) to a long generation (minutes).
_ATTEMPT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
# Decode speed: a few ms per token on a GPU server, tens to hundreds on a CPU or a loaded upstream.
_INTER_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class GenerationMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.requests = Counter(
            "llmsuite_generation_requests",
            "Generate calls by routed model and outcome (completed, cancelled, failed:<code>).",
            ["model", "outcome"],
            registry=registry,
        )
        self.attempts = Counter(
            "llmsuite_generation_upstream_attempts",
            "Upstream attempts by deployment and result (ok or the error code).",
            ["deployment", "result"],
            registry=registry,
        )
        # `org` is the organization in the request context the gateway sends ("-" when none): the
        # series a per-organization spend dashboard needs. Organizations are configured, not
        # client-chosen, so its cardinality is the number of tenants.
        self.upstream_duration = Histogram(
            "llmsuite_generation_upstream_duration_seconds",
            "One upstream attempt, from sending the request to the end of its response or its failure, "
            "by deployment and result (ok, the error code, or cancelled).",
            ["deployment", "result"],
            buckets=_ATTEMPT_BUCKETS,
            registry=registry,
        )
        self.time_to_first_token = Histogram(
            "llmsuite_generation_time_to_first_token_seconds",
            "Time from the Generate call's start (retries included) to its first generated token, "
            "by the deployment that answered.",
            ["deployment"],
            buckets=_TTFT_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "llmsuite_generation_inter_token_seconds",
            "Gap between consecutive content deltas of one upstream stream, by deployment.",
            ["deployment"],
            buckets=_INTER_TOKEN_BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "llmsuite_generation_tokens",
            "Tokens accounted by organization, routed model, deployment and kind "
            "(prompt, completion, cached).",
            ["org", "model", "deployment", "kind"],
            registry=registry,
        )
        self.cost = Counter(
            "llmsuite_generation_cost_usd",
            "Cost from the routing table's prices, by organization, routed model and deployment.",
            ["org", "model", "deployment"],
            registry=registry,
        )
        self.breaker_opened = Counter(
            "llmsuite_generation_breaker_opened",
            "Times a deployment's circuit breaker opened.",
            ["deployment"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "llmsuite_generation_upstream_in_flight",
            "Upstream requests open now, by deployment.",
            ["deployment"],
            registry=registry,
        )
        self.retry_budget = Gauge(
            "llmsuite_generation_retry_budget_available",
            "Retries the retry budget allows now (a share of the window's requests plus the reserve).",
            registry=registry,
        )
        self.routing_reload_errors = Counter(
            "llmsuite_generation_routing_reload_errors",
            "Routing files rejected on reload; the table in force stays.",
            registry=registry,
        )
