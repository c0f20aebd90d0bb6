"""Generation's Prometheus metrics, in the process registry the metrics listener serves."""

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge


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
        self.retry_tokens = Gauge(
            "llmsuite_generation_retry_budget_tokens",
            "Tokens in the retry throttle's bucket; retries need more than half of its size.",
            registry=registry,
        )
        self.routing_reload_errors = Counter(
            "llmsuite_generation_routing_reload_errors",
            "Routing files rejected on reload; the table in force stays.",
            registry=registry,
        )
