"""POST /v1/messages: Anthropic's Messages API, a door onto the chat pipeline.

The request is translated into the internal chat request (api/doors/anthropic.py) and served as
every door's is (api/serve_chat.py: the same admission, limits, budget, idempotency, result cache,
guardrails, retrieval, generation through the output rail, usage and request log, under its own
route); the answer is a Message or its stream of events (api/doors/anthropic_output.py). Errors on
this route, whatever fails (the key, validation, a limit), are in Anthropic's shape
(errors.shape_for). The key may come as `x-api-key` or as a bearer token; `anthropic-version`
and `anthropic-beta` are accepted whatever they say: what a request asks for is in its body.
"""

from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ..deps import ServingDep
from ..doors.anthropic import MessagesRequest, to_chat
from ..doors.anthropic_output import ANTHROPIC
from ..serve_chat import serve_chat

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.post("/v1/messages", response_class=Response)
async def create_message(body: MessagesRequest, serving: ServingDep) -> Response:
    original = body.model_dump(mode="json", exclude_unset=True)
    return await serve_chat(ANTHROPIC, to_chat(body), serving, original=original)
