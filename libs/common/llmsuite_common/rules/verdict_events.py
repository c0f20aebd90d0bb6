"""The verdict of every check, as an event on the call's span.

Verdicts by surface: input is allow, redact or block; retrieved context is allow or drop (some
chunks dropped); the output stream is allow, redact or block. Only verdicts, reason codes, check
names and counts go on the event: never the checked text, nor the findings' messages.
"""

from collections.abc import Iterable

from opentelemetry.trace import Span

from llmsuite_common.rules.findings import Finding

VERDICT_EVENT = "llmsuite.guardrails.verdict"


def add_verdict_event(
    span: Span,
    surface: str,
    verdict: str,
    findings: Iterable[Finding],
    policy_version: str,
    **counts: int,
) -> None:
    """`counts` become `llmsuite.guardrails.<name>` integer attributes (e.g. dropped chunks)."""
    if not span.is_recording():
        return
    findings = list(findings)
    attributes: dict[str, str | int | list[str]] = {
        "llmsuite.guardrails.surface": surface,
        "llmsuite.guardrails.verdict": verdict,
        # Codes and check names are fixed identifiers from this service's code, in first-seen order.
        "llmsuite.guardrails.reason_codes": list(dict.fromkeys(f.code for f in findings)),
        "llmsuite.guardrails.checks": list(dict.fromkeys(f.check for f in findings)),
        "llmsuite.guardrails.policy_version": policy_version,
    }
    for name, value in counts.items():
        attributes[f"llmsuite.guardrails.{name}"] = value
    span.add_event(VERDICT_EVENT, attributes)
