"""One logged request read back by its id (the x-request-id the gateway returned)."""

import orjson
from fastapi import APIRouter, Path
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ..deps import IdentityDep, UsageDep
from ..request_id import MAX_REQUEST_ID_LENGTH

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.get("/v1/requests/{request_id}", response_class=Response)
async def read_request(
    identity: IdentityDep,
    usage: UsageDep,
    request_id: str = Path(min_length=1, max_length=MAX_REQUEST_ID_LENGTH),
) -> Response:
    record = await usage.request(identity, request_id)
    return Response(orjson.dumps(record), media_type="application/json")
