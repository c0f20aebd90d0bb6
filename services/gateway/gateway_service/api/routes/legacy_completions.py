"""POST /v1/completions: OpenAI's legacy Completions API, a door onto the chat pipeline.

The request is translated into the internal chat request (api/doors/completions.py: the prompt
as one user message) and served as every door's is (api/serve_chat.py: the same admission,
limits, budget, idempotency, result cache, guardrails, retrieval, generation through the output
rail, usage and request log, under its own route); the answer is a text_completion object, or
one per streamed delta and [DONE].
"""

from fastapi import APIRouter
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ..deps import ServingDep
from ..doors.completions import COMPLETIONS, CompletionsRequest, to_chat
from ..serve_chat import serve_chat

router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.post("/v1/completions", response_class=Response)
async def create_completion(body: CompletionsRequest, serving: ServingDep) -> Response:
    original = body.model_dump(mode="json", exclude_unset=True)
    return await serve_chat(COMPLETIONS, to_chat(body), serving, original=original)
