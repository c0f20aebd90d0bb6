"""POST /v1/responses (OpenAI's Responses API), GET and DELETE /v1/responses/{id}.

A thin door: the request is translated into the internal chat request (api/doors/responses.py)
and served by api/serve_chat.py as every door's is: admitted and settled by the same RequestEdge
(limits, budget, idempotency, result cache, usage and the request log, under its own route) and
answered by the same pipeline (guardrails, retrieval, generation through the output rail, the structured
output rail for `text.format`). What comes back is the Response object, or its typed events
(api/doors/responses_output.py). A response is kept (`store`, true unless the client says false)
before the client sees it whole, so a follow-up may name it at once.
"""

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME, Identity
from ...edge.response_store import KeptResponse, ResponseStore
from ..completions import CompletionMeta
from ..deps import IdentityDep, ResponseStoreDep, ServingDep
from ..doors.responses import ROUTE, ResponsesRequest, conversation_of, to_chat
from ..doors.responses_output import ResponseEvents, ResponseMeta, assistant_turn, new_id, whole_response
from ..errors import ApiError
from ..serve_chat import Door, serve_chat

router = APIRouter(dependencies=[API_KEY_SCHEME])

MAX_RESPONSE_ID_LENGTH = 256


def not_found(response_id: str, param: str = "response_id") -> ApiError:
    # The same answer whether the id is unknown, expired or another organization's.
    return ApiError(404, f"Response with id '{response_id}' not found.", code="not_found", param=param)


def keeper(
    store: ResponseStore, identity: Identity, body: ResponsesRequest, history: list[Any]
) -> Callable[[dict[str, Any]], Awaitable[None]] | None:
    """Keeps a finished Response with the conversation a follow-up continues; None for store: false."""
    if not body.kept:
        return None

    async def keep(response: dict[str, Any]) -> None:
        conversation = conversation_of(body, history, assistant_turn(response))
        await store.put(
            KeptResponse(response["id"], identity.org_id, identity.key_id, response, conversation)
        )

    return keep


def responses_door(body: ResponsesRequest, keep: Callable[[dict[str, Any]], Awaitable[None]] | None) -> Door:
    """The Responses API's door for one request: its answers repeat what the request asked for."""

    def meta_of(meta: CompletionMeta) -> ResponseMeta:
        return ResponseMeta(body, meta.model, meta.citations, id=meta.id, created_at=meta.created)

    return Door.of_events(
        route=ROUTE,
        new_id=lambda: new_id("resp"),
        whole=lambda meta, content, final: whole_response(meta_of(meta), content, final),
        encoder=lambda meta, chat: ResponseEvents(meta_of(meta)),
        keep=keep,
    )


@router.post("/v1/responses", response_class=Response)
async def create_response(body: ResponsesRequest, serving: ServingDep, store: ResponseStoreDep) -> Response:
    history: list[Any] = []
    if body.previous_response_id is not None:
        previous = await store.get(serving.identity.org_id, body.previous_response_id)
        if previous is None:
            raise not_found(body.previous_response_id, "previous_response_id")
        history = previous.conversation
    door = responses_door(body, keeper(store, serving.identity, body, history))
    original = body.model_dump(mode="json", exclude_unset=True)
    return await serve_chat(door, to_chat(body, history), serving, original=original)


@router.get("/v1/responses/{response_id}", response_class=Response)
async def retrieve_response(
    request: Request,
    identity: IdentityDep,
    store: ResponseStoreDep,
    response_id: str = Path(min_length=1, max_length=MAX_RESPONSE_ID_LENGTH),
    stream: bool = Query(False),
) -> Response:
    if stream:
        raise ApiError(
            400, "streaming a stored response again is not supported", code="unsupported", param="stream"
        )
    # `include=` or `include[]=` (the openai client's spelling of a list).
    if any(name in ("include", "include[]") for name in request.query_params):
        raise ApiError(400, "include is not supported by this gateway", code="unsupported", param="include")
    kept = await store.get(identity.org_id, response_id)
    if kept is None:
        raise not_found(response_id)
    return Response(orjson.dumps(kept.response), media_type="application/json")


@router.delete("/v1/responses/{response_id}", response_class=Response)
async def delete_response(
    identity: IdentityDep,
    store: ResponseStoreDep,
    response_id: str = Path(min_length=1, max_length=MAX_RESPONSE_ID_LENGTH),
) -> Response:
    if not await store.delete(identity.org_id, response_id):
        raise not_found(response_id)
    body = {"id": response_id, "object": "response", "deleted": True}
    return Response(orjson.dumps(body), media_type="application/json")
