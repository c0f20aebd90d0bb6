"""What the output rail reports when a stream is blocked or done, wherever the rail runs (the
guardrails CheckOutputStream call, the gateway): the check metrics and the verdict event."""

from opentelemetry.trace import Span

from .findings import CheckRun, Finding
from .metrics import RuleMetrics
from .output_rail import RailState
from .verdict_events import add_verdict_event


def report_block(
    span: Span, findings: list[Finding], policy_version: str, metrics: RuleMetrics | None
) -> None:
    if metrics is not None:
        metrics.record("output", [], findings)
    add_verdict_event(span, "output", "block", findings, policy_version)


def report_done(span: Span, state: RailState, policy_version: str, metrics: RuleMetrics | None) -> None:
    if metrics is not None:
        metrics.record("output", [CheckRun("output_scan", state.scan_us)], state.flags)
    verdict = "redact" if state.redactions else "allow"
    add_verdict_event(span, "output", verdict, state.flags, policy_version, redactions=state.redactions)
