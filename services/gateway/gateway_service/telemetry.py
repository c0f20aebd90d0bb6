from llmsuite_common.telemetry import setup_telemetry
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from .settings import GatewaySettings

# Probes and scrapes would otherwise be most of the traces.
UNTRACED_URLS = "/healthz,/readyz,/metrics"


def instrumentation_options() -> dict[str, object]:
    # Per-message receive/send spans would add one span per streamed chunk.
    return {"excluded_urls": UNTRACED_URLS, "exclude_spans": ["receive", "send"]}


def setup_gateway_telemetry(settings: GatewaySettings) -> None:
    """Logging, tracing and gRPC client instrumentation, then FastAPI's; before any app is built."""
    setup_telemetry(settings)
    FastAPIInstrumentor().instrument(**instrumentation_options())
