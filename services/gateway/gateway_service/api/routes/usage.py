"""Usage and spend, read back: per key, model and route (or per day, key and model: `group_by=day`)
from a date (default: this month, UTC) up to another (`until`), for one end user when asked
(`end_user`)."""

from datetime import UTC, date, datetime, timedelta

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


def until_of(until: str | None) -> datetime | None:
    """An exclusive end: an ISO 8601 time (UTC unless it says otherwise), or a date, which means the
    end of that day (the next midnight, UTC); None when not given."""
    if until is None:
        return None
    try:
        day = date.fromisoformat(until)
    except ValueError:
        pass
    else:
        if day == date.max:
            # The end of the last day a date can name is past every row: no bound.
            return None
        return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    try:
        end = datetime.fromisoformat(until)
    except ValueError:
        raise ApiError(400, "until must be an ISO 8601 date or time", param="until") from None
    return end if end.tzinfo is not None else end.replace(tzinfo=UTC)


@router.get("/v1/usage", response_class=Response)
async def read_usage(
    identity: IdentityDep,
    usage: UsageDep,
    org_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    end_user: str | None = Query(None, min_length=1, max_length=MAX_END_USER_LENGTH),
    group_by: str | None = None,
) -> Response:
    if group_by not in (None, "day"):
        raise ApiError(400, "group_by must be 'day' or left out", param="group_by")
    start, end = since_of(since), until_of(until)
    await usage.flush()
    rows = await usage.summary(
        identity, org_id=org_id, since=start, end_user=end_user, until=end, by_day=group_by == "day"
    )
    spend = {
        "key": await usage.spent(f"key:{identity.key_id}"),
        "org": await usage.spent(f"org:{org_id or identity.org_id}"),
    }
    if end_user is not None and org_id in (None, identity.org_id):
        # This month's spend of that end user in the caller's organization (its budget's counter).
        spend["end_user"] = await usage.spent(end_user_spend_scope(identity.org_id, end_user))
    window = {"since": start.isoformat()} | ({"until": end.isoformat()} if end is not None else {})
    grouped = {"group_by": group_by} if group_by is not None else {}
    return Response(
        orjson.dumps({"object": "list", **window, **grouped, "data": rows, "spend_this_month_usd": spend}),
        media_type="application/json",
    )
