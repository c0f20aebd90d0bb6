"""One logged request read back by its id (the x-request-id the gateway returned)."""

import orjson
from fastapi import APIRouter, Path, Request
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME, Identity
from ...edge.usage import UsageRecorder
from ..request_id import MAX_REQUEST_ID_LENGTH


def requests_router(usage: UsageRecorder) -> APIRouter:
    router = APIRouter(dependencies=[API_KEY_SCHEME])

    @router.get("/v1/requests/{request_id}", response_class=Response)
    async def read_request(
        request: Request, request_id: str = Path(min_length=1, max_length=MAX_REQUEST_ID_LENGTH)
    ) -> Response:
        identity: Identity = request.state.identity
        record = await usage.request(identity, request_id)
        return Response(orjson.dumps(record), media_type="application/json")

    return router
