"""Exemplars that link a metric sample to the trace that produced it.

prometheus_client keeps the latest exemplar per bucket (or per counter series) and serves them only
in the OpenMetrics format, which every /metrics endpoint negotiates from the scraper's Accept header.
"""

from opentelemetry import trace
from opentelemetry.trace import Span


def trace_exemplar(span: Span | None = None) -> dict[str, str] | None:
    """`{"trace_id": ...}` of `span` (default: the current one) when its trace is sampled, else None:
    an exemplar must point at a trace the backend kept."""
    context = (span or trace.get_current_span()).get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    return {"trace_id": format(context.trace_id, "032x")}
