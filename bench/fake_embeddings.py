"""A remote OpenAI-compatible /v1/embeddings endpoint for benchmarks: a fixed time per call,
whatever the batch size, like a GPU embedding server that is far from full.

Vectors are unit-length and made up (a fixed pool, picked by the text's position), so serving
them costs next to nothing; base64 when the request asks for it, as OpenAI and TEI do.
"""

import argparse
import asyncio
import base64

import numpy as np
import orjson
import uvloop
from aiohttp import web

POOL = 1024


def vectors(dimension: int) -> tuple[list[str], list[list[float]]]:
    rng = np.random.default_rng(7)
    rows = rng.standard_normal((POOL, dimension)).astype("<f4")
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return [base64.b64encode(row.tobytes()).decode() for row in rows], rows.tolist()


def build_app(delay_ms: float, dimension: int) -> web.Application:
    as_base64, as_floats = vectors(dimension)
    calls = {"calls": 0, "texts": 0}

    async def embeddings(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            texts = body["input"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return web.Response(
                status=400, body=b'{"error": {"message": "bad request"}}', content_type="application/json"
            )
        if isinstance(texts, str):
            texts = [texts]
        pool = as_base64 if body.get("encoding_format") == "base64" else as_floats
        calls["calls"] += 1
        calls["texts"] += len(texts)
        await asyncio.sleep(delay_ms / 1000)
        answer = {
            "object": "list",
            "model": body.get("model") or "bench-embedding",
            "data": [
                {"object": "embedding", "index": i, "embedding": pool[i % POOL]} for i in range(len(texts))
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }
        return web.Response(body=orjson.dumps(answer), content_type="application/json")

    async def stats(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(calls), content_type="application/json")

    async def health(_: web.Request) -> web.Response:
        return web.Response(body=b'{"status":"ok"}', content_type="application/json")

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/bench/stats", stats)
    app.router.add_get("/health", health)
    return app


async def serve(host: str, port: int, delay_ms: float, dimension: int) -> None:
    runner = web.AppRunner(build_app(delay_ms, dimension), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=20.0, help="time per call, whatever its batch")
    parser.add_argument("--dimension", type=int, default=384)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.delay_ms, args.dimension))


if __name__ == "__main__":
    main()
