"""Usage and spend, read back: per key and model since a date (default: this month, UTC)."""

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...edge.usage import month
from ..deps import IdentityDep, UsageDep
from ..errors import ApiError

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.get("/v1/usage", response_class=Response)
async def read_usage(
    identity: IdentityDep, usage: UsageDep, org_id: str | None = None, since: str | None = None
) -> Response:
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
