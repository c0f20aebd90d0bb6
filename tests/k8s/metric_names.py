"""Metric names the alerts may read: the services' own, from their metrics classes."""

from gateway_service.metrics import GatewayMetrics
from generation_service.metrics import GenerationMetrics
from guardrails_service.metrics import GuardrailsMetrics
from llmsuite_common.grpc_metrics import GrpcServerMetrics
from prometheus_client import CollectorRegistry

from tools.dashboard.names import referenced, series_names


def _known() -> set[str]:
    backends = CollectorRegistry()
    GrpcServerMetrics(backends)
    GuardrailsMetrics(backends)
    GenerationMetrics(backends)
    families = [*GatewayMetrics().registry.collect(), *backends.collect()]
    return series_names(families) | {"up"}


KNOWN_METRICS = _known()
# kube-state-metrics, which the kube-prometheus stack runs beside Prometheus.
KUBE_STATE_PREFIXES = ("kube_pod_", "kube_deployment_", "kube_horizontalpodautoscaler_")
metric_names = referenced
