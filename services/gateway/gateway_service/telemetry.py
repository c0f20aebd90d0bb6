from llmsuite_common.telemetry import setup_telemetry

from .settings import GatewaySettings


def setup_gateway_telemetry(settings: GatewaySettings) -> None:
    """Logging, tracing and gRPC client instrumentation; before any app is built.

    The request span itself comes from the app's RequestTracing middleware.
    """
    setup_telemetry(settings)
