"""GET /v1/models and GET /v1/models/{id}: the models generation can route, as OpenAI lists them."""

from typing import Any

import orjson
from fastapi import APIRouter, Path
from llmsuite.generation.v1 import generation_pb2
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...pipeline.deadline import Deadline
from ..deps import PipelineDep, SettingsDep
from ..errors import ApiError

DEFAULT_OWNER = "llmsuite"

router = APIRouter(dependencies=[API_KEY_SCHEME])


def model_object(m: generation_pb2.Model) -> dict[str, Any]:
    return {"id": m.id, "object": "model", "created": m.created, "owned_by": m.owned_by or DEFAULT_OWNER}


@router.get("/v1/models", response_class=Response)
async def list_models(pipeline: PipelineDep, settings: SettingsDep) -> Response:
    models = await pipeline.list_models(Deadline(settings.gateway_request_timeout_seconds))
    data = [model_object(m) for m in models]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/v1/models/{model_id:path}", response_class=Response)
async def retrieve_model(
    pipeline: PipelineDep, settings: SettingsDep, model_id: str = Path(min_length=1, max_length=256)
) -> Response:
    models = await pipeline.list_models(Deadline(settings.gateway_request_timeout_seconds))
    for m in models:
        if m.id == model_id:
            return Response(orjson.dumps(model_object(m)), media_type="application/json")
    raise ApiError(404, f"The model '{model_id}' does not exist", code="model_not_found", param="model")
