"""Liveness, readiness and metrics; unauthenticated, for the platform rather than clients."""

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ..deps import ClientsDep, LifecycleDep, MetricsDep, SettingsDep
from ..errors import ApiError, error_response

SERVING = "SERVING"
BACKENDS = ("guardrails", "retrieval", "generation")

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> Response:
    return Response(orjson.dumps({"status": "ok"}), media_type="application/json")


@router.get("/readyz")
async def readyz(clients: ClientsDep, settings: SettingsDep, lifecycle: LifecycleDep) -> Response:
    if lifecycle.draining:
        return error_response(ApiError(503, "not ready: draining", code="not_ready"))
    statuses = await clients.health(settings.gateway_readiness_timeout_seconds)
    failed = {name: statuses.get(name, "NOT_CONNECTED") for name in BACKENDS if statuses.get(name) != SERVING}
    if failed:
        detail = ", ".join(f"{name}={status}" for name, status in failed.items())
        return error_response(ApiError(503, f"not ready: {detail}", code="not_ready"))
    return Response(orjson.dumps({"status": "ready", "backends": statuses}), media_type="application/json")


@router.get("/metrics")
async def prometheus_metrics(request: Request, metrics: MetricsDep) -> Response:
    body, content_type = metrics.negotiate(request.headers.get("accept"))
    return Response(body, media_type=content_type)
