"""Validate rendered objects against the Kubernetes OpenAPI schemas (kubernetes-validate)."""

from typing import Any

import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError, latest_version

from . import crds

# Custom resources have no schema in kubernetes-validate. Those with a CRD schema committed under
# crds/ are validated against it (crds.py); the shape of the others is checked in tests/k8s.
CUSTOM_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("keda.sh/v1alpha1", "ScaledObject"),
}


def newest_kube() -> str:
    return latest_version()


def validate(obj: dict[str, Any], kube_version: str) -> str | None:
    """None when valid (strict: unknown fields fail), else the error; custom kinds without a
    committed CRD schema are skipped."""
    if crds.known(obj):
        return crds.validate(obj)
    if (obj.get("apiVersion"), obj.get("kind")) in CUSTOM_KINDS:
        return None
    try:
        kubernetes_validate.validate(obj, kube_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(root)"
        return f"{where}: {exc.message}"
    except SchemaNotFoundError as exc:
        return exc.message
    return None
