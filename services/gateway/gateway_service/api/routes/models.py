import orjson
from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...pipeline.chat import ChatPipeline
from ...pipeline.deadline import Deadline
from ...settings import GatewaySettings

DEFAULT_OWNER = "llmsuite"


def models_router(pipeline: ChatPipeline, settings: GatewaySettings) -> APIRouter:
    router = APIRouter(dependencies=[API_KEY_SCHEME])

    @router.get("/v1/models", response_class=Response)
    async def list_models() -> Response:
        models = await pipeline.list_models(Deadline(settings.gateway_request_timeout_seconds))
        data = [
            {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by or DEFAULT_OWNER}
            for m in models
        ]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")

    return router
