"""The request log read back: one request by its id (the x-request-id the gateway returned), or the
latest ones, for one end user when asked (`end_user`)."""

import orjson
from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...edge.request_log import RequestQuery
from ..deps import IdentityDep, UsageDep
from ..request_id import MAX_REQUEST_ID_LENGTH
from .usage import MAX_END_USER_LENGTH, since_of

router = APIRouter(dependencies=[API_KEY_SCHEME])

MAX_LISTED = 1000


@router.get("/v1/requests", response_class=Response)
async def list_requests(
    identity: IdentityDep,
    usage: UsageDep,
    since: str | None = None,
    end_user: str | None = Query(None, min_length=1, max_length=MAX_END_USER_LENGTH),
    limit: int = Query(100, ge=1, le=MAX_LISTED),
) -> Response:
    query = RequestQuery(since=since_of(since), end_user=end_user, limit=limit)
    records = await usage.requests(identity, query)
    return Response(orjson.dumps({"object": "list", "data": records}), media_type="application/json")


@router.get("/v1/requests/{request_id}", response_class=Response)
async def read_request(
    identity: IdentityDep,
    usage: UsageDep,
    request_id: str = Path(min_length=1, max_length=MAX_REQUEST_ID_LENGTH),
) -> Response:
    record = await usage.request(identity, request_id)
    return Response(orjson.dumps(record), media_type="application/json")
