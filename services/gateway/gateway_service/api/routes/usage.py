"""Usage and spend, read back: per key, model and route since a date (default: this month, UTC),
for one end user when asked (`end_user`)."""

from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Query
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...edge.end_users import end_user_spend_scope
from ...edge.usage import month
from ..deps import IdentityDep, UsageDep
from ..errors import ApiError

router = APIRouter(dependencies=[API_KEY_SCHEME])

MAX_END_USER_LENGTH = 256


def since_of(since: str | None) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise); the start of this month by default."""
    try:
        start = datetime.fromisoformat(since) if since else datetime.strptime(month() + "-01", "%Y-%m-%d")
    except ValueError:
        raise ApiError(400, "since must be an ISO 8601 date or time", param="since") from None
    return start if start.tzinfo is not None else start.replace(tzinfo=UTC)


@router.get("/v1/usage", response_class=Response)
async def read_usage(
    identity: IdentityDep,
    usage: UsageDep,
    org_id: str | None = None,
    since: str | None = None,
    end_user: str | None = Query(None, min_length=1, max_length=MAX_END_USER_LENGTH),
) -> Response:
    start = since_of(since)
    await usage.flush()
    rows = await usage.summary(identity, org_id=org_id, since=start, end_user=end_user)
    spend = {
        "key": await usage.spent(f"key:{identity.key_id}"),
        "org": await usage.spent(f"org:{org_id or identity.org_id}"),
    }
    if end_user is not None and org_id in (None, identity.org_id):
        # This month's spend of that end user in the caller's organization (its budget's counter).
        spend["end_user"] = await usage.spent(end_user_spend_scope(identity.org_id, end_user))
    return Response(
        orjson.dumps(
            {"object": "list", "since": start.isoformat(), "data": rows, "spend_this_month_usd": spend}
        ),
        media_type="application/json",
    )
