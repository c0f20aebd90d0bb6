"""Per-check latency and outcome counts, wherever a guardrail rule runs.

Guardrails records its input and context checks here; the gateway records the output rail it
runs next to the stream, under the same names, so a dashboard or alert reads every surface alike.
"""

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram

from .findings import CheckRun, Finding

_BUCKETS = (0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05)


class RuleMetrics:
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.check_seconds = Histogram(
            "llmsuite_guardrails_check_seconds",
            "Time one check took on one call, by surface (input, context, output) and check.",
            ["surface", "check"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.findings = Counter(
            "llmsuite_guardrails_findings",
            "Findings by surface, check and action taken (block, redact, warn).",
            ["surface", "check", "action"],
            registry=registry,
        )
        self.over_budget = Counter(
            "llmsuite_guardrails_over_budget",
            "Checks that took longer than their policy latency budget.",
            ["surface", "check"],
            registry=registry,
        )
        self.failures = Counter(
            "llmsuite_guardrails_check_failures",
            "Checks that raised; the policy's fail_open decided the outcome.",
            ["surface", "check"],
            registry=registry,
        )

    def record(self, surface: str, timings: list[CheckRun], findings: list[Finding]) -> None:
        for run in timings:
            self.check_seconds.labels(surface, run.check).observe(run.elapsed_us / 1e6)
            if run.over_budget:
                self.over_budget.labels(surface, run.check).inc()
            if run.failed:
                self.failures.labels(surface, run.check).inc()
        for f in findings:
            self.findings.labels(surface, f.check, f.action).inc()
