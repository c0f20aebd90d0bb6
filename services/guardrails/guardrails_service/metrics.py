"""Guardrails' metrics: every check's latency and outcomes (shared with the gateway's output rail),
structured outputs and policy reloads, in the process registry the metrics listener serves."""

from llmsuite_common.rules.metrics import RuleMetrics
from prometheus_client import REGISTRY, CollectorRegistry, Counter


class GuardrailsMetrics(RuleMetrics):
    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        super().__init__(registry)
        self.structured = Counter(
            "llmsuite_guardrails_structured_outputs",
            "Structured-output validations by outcome (valid, repaired, invalid).",
            ["outcome"],
            registry=registry,
        )
        self.reasks = Counter(
            "llmsuite_guardrails_structured_reasks",
            "Answers validated after the model was re-asked with the previous answer's errors.",
            registry=registry,
        )
        self.policy_reload_errors = Counter(
            "llmsuite_guardrails_policy_reload_errors",
            "Policy files rejected on (re)load; the last good policy stays in force.",
            registry=registry,
        )
        self.classifier_calls = Counter(
            "llmsuite_guardrails_classifier_calls",
            "Inconclusive injection scores sent to the model classifier, by outcome "
            "(block, warn, unavailable: an error or the budget ran out, the warning stands).",
            ["outcome"],
            registry=registry,
        )
