"""The request log read back: one request by its id (the x-request-id the gateway returned), or the
latest ones, newest first, a page at a time (`cursor`), narrowed by time, key, model, status,
finish reason, guardrail verdict, route or end user."""

import re
from typing import Annotated

import orjson
from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...edge.request_log import RequestQuery, decode_cursor
from ..deps import IdentityDep, UsageDep
from ..errors import ApiError
from ..request_id import MAX_REQUEST_ID_LENGTH
from .usage import MAX_END_USER_LENGTH, since_of, until_of

router = APIRouter(dependencies=[API_KEY_SCHEME])

MAX_LISTED = 1000
MAX_FILTER_LENGTH = 256
MAX_CURSOR_LENGTH = 512
_STATUS_CLASS = re.compile(r"[1-5]xx")


def status_range(status: str | None) -> tuple[int | None, int | None]:
    """(lowest, highest exclusive) status `status` names: `429`, a class (`4xx`), or `error` (>= 400)."""
    if status is None:
        return None, None
    value = status.strip().lower()
    if value == "error":
        return 400, None
    if _STATUS_CLASS.fullmatch(value):
        low = int(value[0]) * 100
        return low, low + 100
    if len(value) == 3 and value.isascii() and value.isdigit() and 100 <= int(value) <= 599:
        return int(value), int(value) + 1
    raise ApiError(400, "status must be an HTTP status (429), a class (4xx) or 'error'", param="status")


# A value a listed row must have.
Filter = Annotated[str | None, Query(min_length=1, max_length=MAX_FILTER_LENGTH)]


@router.get("/v1/requests", response_class=Response)
async def list_requests(
    identity: IdentityDep,
    usage: UsageDep,
    since: str | None = None,
    until: str | None = None,
    key_id: Filter = None,
    model: Filter = None,
    status: str | None = None,
    finish_reason: Filter = None,
    verdict: Filter = None,
    route: Filter = None,
    end_user: str | None = Query(None, min_length=1, max_length=MAX_END_USER_LENGTH),
    cursor: str | None = Query(None, max_length=MAX_CURSOR_LENGTH),
    limit: int = Query(100, ge=1, le=MAX_LISTED),
) -> Response:
    status_min, status_max = status_range(status)
    query = RequestQuery(
        since=since_of(since),
        end_user=end_user,
        limit=limit,
        until=until_of(until),
        key_id=key_id,
        model=model,
        status_min=status_min,
        status_max=status_max,
        finish_reason=finish_reason,
        verdict=verdict,
        route=route,
        after=decode_cursor(cursor) if cursor is not None else None,
    )
    page = await usage.requests(identity, query)
    body = {"object": "list", "data": page.data, "has_more": page.has_more, "next_cursor": page.next_cursor}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/v1/requests/{request_id}", response_class=Response)
async def read_request(
    identity: IdentityDep,
    usage: UsageDep,
    request_id: str = Path(min_length=1, max_length=MAX_REQUEST_ID_LENGTH),
) -> Response:
    record = await usage.request(identity, request_id)
    return Response(orjson.dumps(record), media_type="application/json")
