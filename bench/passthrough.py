"""The seed baseline: the design article's minimal FastAPI router, made correct and fair.

Kept as in the article: a pydantic request model, an httpx call to the model server,
StreamingResponse for SSE. Changed so that it is a fair baseline rather than a straw man:
one pooled AsyncClient for the process (the article opened one per request), SSE lines
forwarded as they are (the article wrapped them in a second `data:`), and a JSON answer
for non-streaming requests. No auth, limits, guardrails, retries or tracing.
"""

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str
    messages: list[dict] = Field(..., description="OpenAI-style chat format")
    temperature: float = 0.2
    max_tokens: int = 512
    stream: bool = False


def build_app(upstream: str) -> FastAPI:
    client = httpx.AsyncClient(
        base_url=upstream,
        timeout=httpx.Timeout(30.0, read=60.0),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(title="LLM API", version="1.0", lifespan=lifespan)

    async def llm_stream(req: ChatRequest) -> AsyncIterator[bytes]:
        async with client.stream("POST", "/chat/completions", json=req.model_dump()) as r:
            if r.status_code != 200:
                raise HTTPException(r.status_code, "Upstream error")
            async for line in r.aiter_lines():
                if line:
                    yield f"{line}\n\n".encode()

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest) -> Response:
        if req.stream:
            return StreamingResponse(llm_stream(req), media_type="text/event-stream")
        r = await client.post("/chat/completions", json=req.model_dump())
        if r.status_code != 200:
            raise HTTPException(r.status_code, "Upstream error")
        return Response(r.content, media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="FastAPI pass-through to an OpenAI-compatible upstream.")
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.upstream),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
