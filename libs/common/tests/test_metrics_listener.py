"""The gRPC services' metrics listener serves OpenMetrics, exemplars included, to a scraper that asks
for it, and the Prometheus text format otherwise."""

import httpx
from llmsuite_common.exemplars import trace_exemplar
from llmsuite_common.grpc_metrics import start_metrics_server
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import REGISTRY, Counter
from prometheus_client.openmetrics.parser import text_string_to_metric_families

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def test_openmetrics_with_exemplars_when_asked_for():
    span = TracerProvider().get_tracer("test").start_span("call")
    span.end()
    # The listener serves the process registry; a name of its own keeps this test's series apart.
    probe = Counter("llmsuite_test_listener_probe", "Exemplar probe of the listener test.", registry=REGISTRY)
    probe.inc(1, trace_exemplar(span))
    port = start_metrics_server("127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/metrics"

    plain = httpx.get(url, timeout=5)
    negotiated = httpx.get(url, headers={"accept": OPENMETRICS}, timeout=5)

    assert plain.headers["content-type"].startswith("text/plain")
    assert "# {" not in plain.text
    assert negotiated.headers["content-type"].startswith("application/openmetrics-text")
    (sample,) = [
        s
        for family in text_string_to_metric_families(negotiated.text)
        for s in family.samples
        if s.name == "llmsuite_test_listener_probe_total"
    ]
    assert sample.exemplar.labels == {"trace_id": format(span.get_span_context().trace_id, "032x")}


def test_no_exemplar_for_an_unsampled_or_missing_trace():
    context = SpanContext(trace_id=1, span_id=2, is_remote=True, trace_flags=TraceFlags(0))
    unsampled = NonRecordingSpan(context)
    assert trace_exemplar(unsampled) is None
    # Outside any span the current one is the invalid span.
    assert trace_exemplar() is None
