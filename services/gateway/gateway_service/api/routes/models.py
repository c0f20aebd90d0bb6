import orjson
from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...pipeline.deadline import Deadline
from ..deps import PipelineDep, SettingsDep

DEFAULT_OWNER = "llmsuite"

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.get("/v1/models", response_class=Response)
async def list_models(pipeline: PipelineDep, settings: SettingsDep) -> Response:
    models = await pipeline.list_models(Deadline(settings.gateway_request_timeout_seconds))
    data = [
        {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by or DEFAULT_OWNER}
        for m in models
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
