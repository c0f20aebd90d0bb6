"""Which spans a service records: with an exporter, what OTEL_TRACES_SAMPLER says; without one,
none of its own (they could only be dropped), though every span keeps its ids and a caller's
sampled `traceparent` is still followed."""

import pytest
from llmsuite_common.settings import ServiceSettings
from llmsuite_common.telemetry import tracer_provider
from opentelemetry import propagate
from opentelemetry.trace import SpanKind

SAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


def recorded(settings: ServiceSettings, traceparent: str | None = None) -> tuple[bool, int]:
    tracer = tracer_provider(settings).get_tracer("test")
    parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
    with tracer.start_as_current_span("call", context=parent, kind=SpanKind.SERVER) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        assert carrier["traceparent"].split("-")[1] == format(span.get_span_context().trace_id, "032x")
        return span.is_recording(), span.get_span_context().trace_id


def test_without_an_exporter_new_traces_are_not_recorded_but_keep_their_ids(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    settings = ServiceSettings(otel_exporter_otlp_endpoint="")
    is_recording, trace_id = recorded(settings)
    assert not is_recording and trace_id != 0
    assert recorded(settings, SAMPLED) == (True, 0x0AF7651916CD43DD8448EB211C80319C)
    assert recorded(settings, UNSAMPLED)[0] is False


@pytest.mark.parametrize(("ratio", "expected"), [("1.0", True), ("0.0", False)])
def test_with_an_exporter_the_sampler_setting_decides(monkeypatch, ratio, expected):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
    settings = ServiceSettings(otel_exporter_otlp_endpoint="http://127.0.0.1:4317")
    assert recorded(settings)[0] is expected
    # A caller's decision wins over the ratio.
    assert recorded(settings, SAMPLED)[0] is True
    assert recorded(settings, UNSAMPLED)[0] is False


def test_with_an_exporter_and_no_sampler_setting_every_trace_is_recorded(monkeypatch):
    monkeypatch.delenv("OTEL_TRACES_SAMPLER", raising=False)
    assert recorded(ServiceSettings(otel_exporter_otlp_endpoint="http://127.0.0.1:4317"))[0] is True
