"""The fast baseline: an OpenAI chat-completions pass-through written the fastest way a Python
engineer would, to measure how little CPU a Python hop can cost.

aiohttp's server and client (C HTTP parsers) on uvloop, one pooled ClientSession for the
process, orjson. The request body goes upstream exactly as received (it is parsed once, only to
learn whether it asks for a stream); SSE bytes are relayed to the client as they arrive, unchanged;
a non-streaming answer is the upstream's body. No auth, limits, guardrails, retries or tracing.
"""

import argparse
import asyncio

import aiohttp
import orjson
import uvloop
from aiohttp import web

_JSON = {"content-type": "application/json"}
_SSE = {"content-type": "text/event-stream", "cache-control": "no-cache"}


def _error(status: int, message: str) -> web.Response:
    body = orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "code": None}})
    return web.Response(body=body, status=status, headers=_JSON)


def build_app(upstream: str) -> web.Application:
    url = upstream.rstrip("/") + "/chat/completions"
    key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=None, keepalive_timeout=60)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=60)
        app[key] = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False)
        yield
        await app[key].close()

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        try:
            stream = orjson.loads(body).get("stream") is True
        except (orjson.JSONDecodeError, AttributeError):
            return _error(400, "body must be a JSON object")
        try:
            async with request.app[key].post(url, data=body, headers=_JSON) as upstream_reply:
                if not stream or upstream_reply.status != 200:
                    answer = await upstream_reply.read()
                    headers = {"content-type": upstream_reply.headers.get("content-type", "application/json")}
                    return web.Response(body=answer, status=upstream_reply.status, headers=headers)
                reply = web.StreamResponse(status=200, headers=_SSE)
                await reply.prepare(request)
                async for data in upstream_reply.content.iter_any():
                    await reply.write(data)
                await reply.write_eof()
                return reply
        except (TimeoutError, aiohttp.ClientError):
            return _error(502, "upstream unavailable")

    async def health(_: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', headers=_JSON)

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    return app


async def serve(upstream: str, host: str, port: int) -> None:
    runner = web.AppRunner(build_app(upstream), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=1024).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description="aiohttp pass-through to an OpenAI-compatible upstream.")
    parser.add_argument("--upstream", required=True, help="base URL ending in /v1")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.upstream, args.host, args.port))


if __name__ == "__main__":
    main()
