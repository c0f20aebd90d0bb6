"""POST /v1/chat/completions, answered whole or as server-sent events.

The chat door: the request is the internal chat request already, served by api/serve_chat.py as
every door's is (admitted and settled at the edge, run through the pipeline) and answered as
chat.completion objects, or one SSE event per chat.completion.chunk and [DONE].
"""

from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ..deps import ServingDep
from ..schemas import ChatCompletionRequest
from ..serve_chat import CHAT, ChatAnswer, answer_streamed, answer_whole, serve_chat, sse_body

__all__ = ["ChatAnswer", "answer_streamed", "answer_whole", "router", "sse_body"]

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.post("/v1/chat/completions", response_class=Response)
async def create_chat_completion(body: ChatCompletionRequest, serving: ServingDep) -> Response:
    return await serve_chat(CHAT, body, serving)
