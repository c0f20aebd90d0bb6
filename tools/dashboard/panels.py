"""The dashboard's panels: the one definition the Grafana JSON and the local rendering share.

Every query uses `$__rate_interval` and `namespace=~"$namespace"`, the two things Grafana
substitutes; tools.dashboard.names.substitute does the same for a local Prometheus.
"""

from dataclasses import dataclass, field

NS = 'namespace=~"$namespace"'
RATE = "$__rate_interval"
# Requests that count toward the error budget: probes and scrapes do not.
TRAFFIC = f'{NS}, route!~"/healthz|/readyz|/metrics"'
# gRPC codes that mean the backend failed rather than the caller.
SERVER_CODES = "UNKNOWN|INTERNAL|UNAVAILABLE|DEADLINE_EXCEEDED|DATA_LOSS|UNIMPLEMENTED"


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    targets: tuple[Target, ...]
    description: str
    # Panels sharing a row sit side by side, three to a row.
    row: str = ""
    kind: str = "timeseries"
    thresholds: tuple[float, ...] = field(default=())


def quantiles(metric: str, by: str, selector: str, legend: str) -> tuple[Target, ...]:
    """p50/p90/p99 of a histogram, one series per `by` group."""
    group = f"le, {by}" if by else "le"
    return tuple(
        Target(
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))",
            f"p{int(q * 100)} {legend}".strip(),
        )
        for q in (0.5, 0.9, 0.99)
    )


def hit_ratio(metric: str, hit_label: str, by: str, selector: str = NS) -> str:
    by_clause = f"sum by ({by})" if by else "sum"
    return (
        f'{by_clause} (rate({metric}_total{{{selector}, {hit_label}="hit"}}[{RATE}]))'
        f" / clamp_min({by_clause} (rate({metric}_total{{{selector}}}[{RATE}])), 1e-9)"
    )


GATEWAY = "Gateway"
GENERATION = "Generation and upstreams"
BACKENDS = "gRPC backends"
CHECKS = "Guardrails and caches"

PANELS: tuple[Panel, ...] = (
    Panel(
        "Requests by route",
        "reqps",
        (
            Target(
                f"sum by (route) (rate(llmsuite_gateway_requests_total{{{TRAFFIC}}}[{RATE}]))", "{{route}}"
            ),
        ),
        "HTTP requests per second by route template.",
        GATEWAY,
    ),
    Panel(
        "Latency by route (p50 / p90 / p99)",
        "s",
        quantiles("llmsuite_gateway_request_duration_seconds", "route", TRAFFIC, "{{route}}"),
        "Time from request start to the last response byte; streams last as long as their generation.",
        GATEWAY,
    ),
    Panel(
        "Errors by status",
        "reqps",
        (
            Target(
                f'sum by (status) (rate(llmsuite_gateway_requests_total{{{TRAFFIC}, status!~"2.."}}[{RATE}]))',
                "{{status}}",
            ),
        ),
        "Non-2xx answers per second: 4xx are callers' mistakes and limits, 5xx spend the error budget.",
        GATEWAY,
    ),
    Panel(
        "Errors by class",
        "reqps",
        (
            Target(
                f"sum by (class) (rate(llmsuite_gateway_errors_total{{{NS}}}[{RATE}]))",
                "{{class}}",
            ),
        ),
        "Errors answered to clients per second: timeout, upstream_4xx, upstream_5xx, validation, "
        "rate_limited, guardrail_blocked, cancelled (the client left mid-stream).",
        GATEWAY,
    ),
    Panel(
        "5xx ratio (error budget burn)",
        "percentunit",
        (
            Target(
                f'sum(rate(llmsuite_gateway_requests_total{{{TRAFFIC}, status=~"5.."}}[{RATE}]))'
                f" / clamp_min(sum(rate(llmsuite_gateway_requests_total{{{TRAFFIC}}}[{RATE}])), 1e-9)",
                "5xx share",
            ),
        ),
        "Share of requests answered with a 5xx; at 0.5 % the 99.5 % objective's budget burns at 1x.",
        GATEWAY,
        thresholds=(0.005,),
    ),
    Panel(
        "Time to first token (p50 / p90 / p99)",
        "s",
        quantiles("llmsuite_gateway_time_to_first_token_seconds", "stream", NS, "stream={{stream}}"),
        "Time from request start to the first generated token, streamed or not.",
        GATEWAY,
    ),
    Panel(
        "Streams in flight",
        "short",
        (Target(f"sum(llmsuite_gateway_streams_in_flight{{{NS}}})", "open streams"),),
        "Server-sent event streams open right now across gateway pods.",
        GATEWAY,
    ),
    Panel(
        "Gateway overhead (p50 / p99)",
        "s",
        tuple(
            t
            for t in quantiles("llmsuite_gateway_overhead_seconds", "", NS, "overhead")
            if not t.legend.startswith("p90")
        ),
        "Time spent in the gateway itself up to the response headers, backend waits excluded.",
        GATEWAY,
    ),
    Panel(
        "Rate limited by cause",
        "reqps",
        (Target(f"sum by (cause) (rate(llmsuite_gateway_rate_limited_total{{{NS}}}[{RATE}]))", "{{cause}}"),),
        "Requests refused with 429, by the limit that refused them.",
        GATEWAY,
    ),
    Panel(
        "Tokens by model and kind",
        "ops",
        (
            Target(
                f"sum by (model, kind) (rate(llmsuite_generation_tokens_total{{{NS}}}[{RATE}]))",
                "{{model}} {{kind}}",
            ),
        ),
        "Tokens per second accounted by generation: prompt, completion and cached, by routed model.",
        GENERATION,
    ),
    Panel(
        "Cost by model (USD per hour)",
        "currencyUSD",
        (
            Target(
                f"sum by (model) (rate(llmsuite_generation_cost_usd_total{{{NS}}}[{RATE}])) * 3600",
                "{{model}}",
            ),
        ),
        "Spend at the current pace, from the routing table's prices.",
        GENERATION,
    ),
    Panel(
        "Tokens by organization",
        "ops",
        (
            Target(
                f"sum by (org, kind) (rate(llmsuite_generation_tokens_total{{{NS}}}[{RATE}]))",
                "{{org}} {{kind}}",
            ),
        ),
        "Tokens per second each organization used, prompt and completion; `-` is a call without one.",
        GENERATION,
    ),
    Panel(
        "Cost by organization (USD per hour)",
        "currencyUSD",
        (
            Target(
                f"sum by (org) (rate(llmsuite_generation_cost_usd_total{{{NS}}}[{RATE}])) * 3600",
                "{{org}}",
            ),
        ),
        "Each organization's spend at the current pace, from the routing table's prices.",
        GENERATION,
    ),
    Panel(
        "Generate outcomes by model",
        "ops",
        (
            Target(
                f"sum by (model, outcome) (rate(llmsuite_generation_requests_total{{{NS}}}[{RATE}]))",
                "{{model}} {{outcome}}",
            ),
        ),
        "Generate calls per second by routed model: completed, cancelled or failed with a code.",
        GENERATION,
    ),
    Panel(
        "Upstream attempts by deployment and result",
        "ops",
        (
            Target(
                "sum by (deployment, result) "
                f"(rate(llmsuite_generation_upstream_attempts_total{{{NS}}}[{RATE}]))",
                "{{deployment}} {{result}}",
            ),
        ),
        "Attempts per second at each upstream deployment, retries and fallbacks included.",
        GENERATION,
    ),
    Panel(
        "Upstream requests in flight",
        "short",
        (
            Target(
                f"sum by (deployment) (llmsuite_generation_upstream_in_flight{{{NS}}})",
                "{{deployment}}",
            ),
        ),
        "Upstream requests open now, by deployment.",
        GENERATION,
    ),
    Panel(
        "Circuit breaker openings",
        "short",
        (
            Target(
                f"sum by (deployment) (increase(llmsuite_generation_breaker_opened_total{{{NS}}}[{RATE}]))",
                "{{deployment}}",
            ),
        ),
        "Times a deployment's circuit breaker opened within the window.",
        GENERATION,
    ),
    Panel(
        "Upstream time to first token and inter-token gap (p90)",
        "s",
        (
            Target(
                "histogram_quantile(0.9, sum by (le, deployment) "
                f"(rate(llmsuite_generation_time_to_first_token_seconds_bucket{{{NS}}}[{RATE}])))",
                "first token {{deployment}}",
            ),
            Target(
                "histogram_quantile(0.9, sum by (le, deployment) "
                f"(rate(llmsuite_generation_inter_token_seconds_bucket{{{NS}}}[{RATE}])))",
                "between tokens {{deployment}}",
            ),
        ),
        "Per deployment: time from the Generate call (retries included) to its first token, and the gap "
        "between consecutive content deltas (decode speed).",
        GENERATION,
    ),
    Panel(
        "gRPC calls by method",
        "reqps",
        (
            Target(
                f"sum by (grpc_service, grpc_method) (rate(llmsuite_grpc_server_handled_total{{{NS}}}[{RATE}]))",
                "{{grpc_method}}",
            ),
        ),
        "Calls per second each backend method completed.",
        BACKENDS,
    ),
    Panel(
        "gRPC latency by method (p50 / p99)",
        "s",
        tuple(
            t
            for t in quantiles(
                "llmsuite_grpc_server_handling_seconds", "grpc_service, grpc_method", NS, "{{grpc_method}}"
            )
            if not t.legend.startswith("p90")
        ),
        "Time from call start to its last message; Generate streams for the whole generation.",
        BACKENDS,
    ),
    Panel(
        "gRPC error ratio by method",
        "percentunit",
        (
            Target(
                "sum by (grpc_service, grpc_method) "
                f'(rate(llmsuite_grpc_server_handled_total{{{NS}, grpc_code!="OK"}}[{RATE}]))'
                " / clamp_min(sum by (grpc_service, grpc_method) "
                f"(rate(llmsuite_grpc_server_handled_total{{{NS}}}[{RATE}])), 1e-9)",
                "{{grpc_method}}",
            ),
        ),
        "Share of calls that ended with any code but OK, callers' mistakes included.",
        BACKENDS,
    ),
    Panel(
        "gRPC errors by code",
        "reqps",
        (
            Target(
                "sum by (grpc_service, grpc_code) "
                f'(rate(llmsuite_grpc_server_handled_total{{{NS}, grpc_code!="OK"}}[{RATE}]))',
                "{{grpc_service}} {{grpc_code}}",
            ),
        ),
        f"Failed calls per second by status code; {SERVER_CODES.replace('|', ', ')} are the backend's own.",
        BACKENDS,
    ),
    Panel(
        "Guardrail findings by check and action",
        "ops",
        (
            Target(
                f"sum by (surface, check, action) (rate(llmsuite_guardrails_findings_total{{{NS}}}[{RATE}]))",
                "{{surface}} {{check}} {{action}}",
            ),
        ),
        "Findings per second; `block` findings are the requests refused by a guardrail.",
        CHECKS,
    ),
    Panel(
        "Guardrail check latency (p99)",
        "s",
        (
            Target(
                "histogram_quantile(0.99, sum by (le, surface, check) "
                f"(rate(llmsuite_guardrails_check_seconds_bucket{{{NS}}}[{RATE}])))",
                "{{surface}} {{check}}",
            ),
        ),
        "p99 of each check's own time on one call.",
        CHECKS,
    ),
    Panel(
        "Guardrail checks failed or over budget",
        "ops",
        (
            Target(
                f"sum by (surface, check) (rate(llmsuite_guardrails_check_failures_total{{{NS}}}[{RATE}]))",
                "failed {{surface}} {{check}}",
            ),
            Target(
                f"sum by (surface, check) (rate(llmsuite_guardrails_over_budget_total{{{NS}}}[{RATE}]))",
                "over budget {{surface}} {{check}}",
            ),
        ),
        "Checks that raised (the policy's fail_open decided) or ran past their latency budget.",
        CHECKS,
    ),
    Panel(
        "Cache hit ratio",
        "percentunit",
        (
            Target(hit_ratio("llmsuite_gateway_cache_lookups", "outcome", ""), "gateway result cache"),
            Target(hit_ratio("llmsuite_retrieval_cache_lookups", "result", "cache"), "retrieval {{cache}}"),
        ),
        "hit / (hit + miss) of the gateway's result cache and retrieval's embedding and result caches.",
        CHECKS,
    ),
)


def all_targets() -> list[Target]:
    return [t for p in PANELS for t in p.targets]
