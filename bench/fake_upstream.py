"""A fast OpenAI-compatible upstream for benchmarks: fixed delay, fixed chunks, never a fault.

It speaks HTTP/1.1 straight on uvloop with the httptools parser (the parser uvicorn uses) rather
than through an ASGI framework, so that serving it costs as little CPU as possible: every target
in the bench shares this upstream and the 2 cores, and "direct" is meant to be the limit.

Shape of every answer: `delay_ms` before the first token, then `chunks` content chunks
`gap_ms` apart; a non-streaming answer waits the same total time and returns the same text.
The request's `model` picks the shape: `--shape MODEL=DELAY_MS,CHUNKS,GAP_MS` adds one for that
model name (the bench's long answers), every other model gets the default shape.
"""

import argparse
import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import httptools
import orjson
import uvloop


@dataclass(frozen=True)
class Shape:
    delay_ms: float = 5.0
    chunks: int = 16
    gap_ms: float = 1.0

    def token(self, i: int) -> str:
        return f" tok{i}"

    def text(self) -> str:
        return "".join(self.token(i) for i in range(self.chunks))

    def parts(self) -> list[str]:
        return [self.token(i) for i in range(self.chunks)]

    def total_seconds(self) -> float:
        return (self.delay_ms + self.gap_ms * max(self.chunks - 1, 0)) / 1000

    def spec(self) -> str:
        """The `--shape` value that describes this shape."""
        return f"{self.delay_ms},{self.chunks},{self.gap_ms}"


def parse_shape(value: str) -> tuple[str, Shape]:
    """`MODEL=DELAY_MS,CHUNKS,GAP_MS` -> (model, shape)."""
    model, _, numbers = value.partition("=")
    delay, chunks, gap = numbers.split(",")
    if not model:
        raise ValueError(f"no model name in {value!r}")
    return model, Shape(delay_ms=float(delay), chunks=int(chunks), gap_ms=float(gap))


@dataclass
class Counters:
    requests: int = 0
    streamed_chunks: int = 0


_ids = itertools.count(1)
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _head(status: int, content_type: bytes, length: int | None, keep_alive: bool) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"")),
        b"content-type: " + content_type,
        b"content-length: %d" % length if length is not None else b"transfer-encoding: chunked",
        b"connection: keep-alive" if keep_alive else b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _json(status: int, body: object, keep_alive: bool) -> bytes:
    payload = orjson.dumps(body)
    return _head(status, b"application/json", len(payload), keep_alive) + payload


def _error(status: int, message: str, keep_alive: bool) -> bytes:
    return _json(
        status, {"error": {"message": message, "type": "invalid_request_error", "code": None}}, keep_alive
    )


def _sse(event: object) -> bytes:
    data = b"data: " + (event if isinstance(event, bytes) else orjson.dumps(event)) + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class UpstreamProtocol(asyncio.Protocol):
    def __init__(self, shape: Shape, counters: Counters, shapes: dict[str, Shape] | None = None) -> None:
        self._shape = shape
        self._shapes = shapes or {}
        self._counters = counters
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []
        # Responses go out in request order even if a client pipelines.
        self._previous: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(_error(400, "malformed request", keep_alive=False))
            self._close()

    def on_message_begin(self) -> None:
        self._url = b""
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        method = self._parser.get_method()
        keep_alive = self._parser.should_keep_alive()
        path = httptools.parse_url(self._url).path
        body = b"".join(self._body)
        self._previous = asyncio.ensure_future(self._respond(self._previous, method, path, body, keep_alive))

    async def _respond(
        self,
        previous: "asyncio.Future[None] | None",
        method: bytes,
        path: bytes,
        body: bytes,
        keep_alive: bool,
    ) -> None:
        if previous is not None:
            await previous
        if path.endswith(b"/chat/completions"):
            if method != b"POST":
                self._write(_error(405, "use POST", keep_alive))
            else:
                await self._chat(body, keep_alive)
        elif path.endswith(b"/models"):
            self._write(
                _json(200, {"object": "list", "data": [{"id": "bench-model", "object": "model"}]}, keep_alive)
            )
        elif path == b"/bench/stats":
            stats = {"requests": self._counters.requests, "streamed_chunks": self._counters.streamed_chunks}
            self._write(_json(200, stats, keep_alive))
        elif path in (b"/health", b"/healthz"):
            self._write(_json(200, {"status": "ok"}, keep_alive))
        else:
            self._write(_error(404, "no such route", keep_alive))
        if not keep_alive:
            self._close()

    async def _chat(self, body: bytes, keep_alive: bool) -> None:
        try:
            request = orjson.loads(body)
            model = str(request.get("model") or "bench-model")
        except (orjson.JSONDecodeError, AttributeError):
            self._write(_error(400, "body must be a JSON object", keep_alive))
            return
        self._counters.requests += 1
        shape = self._shapes.get(model, self._shape)
        completion_id = f"chatcmpl-bench{next(_ids)}"
        created = int(time.time())
        usage = {"prompt_tokens": 8, "completion_tokens": shape.chunks, "total_tokens": 8 + shape.chunks}
        if not request.get("stream"):
            await asyncio.sleep(shape.total_seconds())
            message = {"role": "assistant", "content": shape.text()}
            choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
            answer = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
            }
            self._write(_json(200, answer, keep_alive))
            return

        include_usage = bool((request.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: dict[str, str], finish: str | None) -> dict[str, object]:
            choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
            return {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [choice],
            }

        self._write(_head(200, b"text/event-stream", None, keep_alive))
        await asyncio.sleep(shape.delay_ms / 1000)
        for i in range(shape.chunks):
            if i and shape.gap_ms:
                await asyncio.sleep(shape.gap_ms / 1000)
            if self._transport is None:
                return
            delta = (
                {"role": "assistant", "content": shape.token(i)} if i == 0 else {"content": shape.token(i)}
            )
            self._write(_sse(chunk(delta, None)))
            self._counters.streamed_chunks += 1
        self._write(_sse(chunk({}, "stop")))
        if include_usage:
            last = chunk({}, None)
            last["choices"] = []
            last["usage"] = usage
            self._write(_sse(last))
        self._write(_sse(b"[DONE]") + b"0\r\n\r\n")

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def start(
    host: str,
    port: int,
    shape: Shape,
    counters: Counters | None = None,
    shapes: dict[str, Shape] | None = None,
) -> tuple[asyncio.Server, int]:
    """Listens on host:port (0 picks a free port); returns the server and the bound port.

    `shapes` maps model names to their own shape; other models get `shape`.
    """
    counters = counters or Counters()
    factory: Callable[[], asyncio.Protocol] = lambda: UpstreamProtocol(shape, counters, shapes)  # noqa: E731
    server = await asyncio.get_running_loop().create_server(factory, host, port, backlog=1024)
    return server, server.sockets[0].getsockname()[1]


async def _main(args: argparse.Namespace) -> None:
    shape = Shape(delay_ms=args.delay_ms, chunks=args.chunks, gap_ms=args.gap_ms)
    shapes = dict(parse_shape(value) for value in args.shape)
    server, port = await start(args.host, args.port, shape, shapes=shapes)
    print(f"fake upstream listening on {args.host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=Shape.delay_ms, help="time to first token")
    parser.add_argument("--chunks", type=int, default=Shape.chunks, help="content chunks per answer")
    parser.add_argument("--gap-ms", type=float, default=Shape.gap_ms, help="time between chunks")
    parser.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="MODEL=DELAY_MS,CHUNKS,GAP_MS",
        help="another shape, for requests naming MODEL (repeatable)",
    )
    uvloop.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
