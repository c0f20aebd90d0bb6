"""Liveness, readiness and metrics; unauthenticated, for the platform rather than clients."""

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..deps import HealthDep, LifecycleDep, MetricsDep
from ..errors import ApiError, error_response

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request, health: HealthDep, lifecycle: LifecycleDep) -> Response:
    """Ready while not draining and the backends every chat needs (guardrails, generation) serve;
    retrieval being down only degrades requests that name a collection (backend_health.py).
    `?verbose` lists each check in plain text, as Kubernetes components do."""
    if lifecycle.draining:
        return error_response(ApiError(503, "not ready: draining", code="not_ready"))
    readiness = await health.check()
    if "verbose" in request.query_params:
        return Response(
            readiness.verbose(), status_code=200 if readiness.ready else 503, media_type="text/plain"
        )
    if not readiness.ready:
        detail = ", ".join(f"{name}={status}" for name, status in readiness.failed.items())
        return error_response(ApiError(503, f"not ready: {detail}", code="not_ready"))
    body = {"status": "ready", "backends": readiness.statuses, "degraded": readiness.degraded}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/metrics")
async def prometheus_metrics(request: Request, metrics: MetricsDep) -> Response:
    body, content_type = metrics.negotiate(request.headers.get("accept"))
    return Response(body, media_type=content_type)
