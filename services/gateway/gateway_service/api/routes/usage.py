"""Usage and spend, read back: per key and model since a date (default: this month, UTC)."""

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME, Identity
from ...edge.usage import UsageRecorder, month
from ..errors import ApiError


def usage_router(usage: UsageRecorder) -> APIRouter:
    router = APIRouter(dependencies=[API_KEY_SCHEME])

    @router.get("/v1/usage", response_class=Response)
    async def read_usage(request: Request, org_id: str | None = None, since: str | None = None) -> Response:
        identity: Identity = request.state.identity
        try:
            start = datetime.fromisoformat(since) if since else datetime.strptime(month() + "-01", "%Y-%m-%d")
        except ValueError:
            raise ApiError(400, "since must be an ISO 8601 date or time", param="since") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=UTC)
        await usage.flush()
        rows = await usage.summary(identity, org_id=org_id, since=start)
        spend = {
            "key": await usage.spent(f"key:{identity.key_id}"),
            "org": await usage.spent(f"org:{org_id or identity.org_id}"),
        }
        return Response(
            orjson.dumps(
                {"object": "list", "since": start.isoformat(), "data": rows, "spend_this_month_usd": spend}
            ),
            media_type="application/json",
        )

    return router
