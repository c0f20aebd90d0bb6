"""Each service answers the standard health check once ready."""

import httpx
from llmsuite_testkit.processes import grpc_serving


def test_grpc_services_report_serving(suite):
    for name in ("guardrails", "retrieval", "generation"):
        assert grpc_serving(getattr(suite.cfg.ports, name)), f"{name} is not SERVING"


def test_gateway_live_and_ready(suite):
    assert httpx.get(f"{suite.gateway_url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{suite.gateway_url}/readyz", timeout=5).status_code == 200
    metrics = httpx.get(f"{suite.gateway_url}/metrics", timeout=5)
    assert metrics.status_code == 200 and "llmsuite_gateway" in metrics.text
