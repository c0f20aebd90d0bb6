"""A minimal, fast OpenAI-compatible upstream for CPU benchmarks (not for tests: see
llmsuite_testkit.openai_upstream).

Raw asyncio HTTP/1.1 on uvloop with keep-alive and pre-rendered answers, so its own cost stays far
below the client's it is measured against. `POST .../chat/completions` with `"stream": true` answers
with `--chunks` SSE content chunks (one chunked-encoding frame and one socket write each,
`--interval` seconds apart, so a client sees each chunk on its own as it would from a model
server), a usage chunk and `[DONE]`; otherwise with the same text as one JSON chat completion
(after the same total time). Anything else gets 404.

    python -m bench.generation.fast_upstream --port 8099 --chunks 200 --interval 0.0005
"""

import argparse
import asyncio
import json
import socket
import time

import uvloop

MODEL = "bench-model"


def render(chunks: int) -> tuple[list[bytes], bytes]:
    """(the SSE frames of a streamed answer, the body of the same answer not streamed)."""

    def frame(obj: object) -> bytes:
        data = f"data: {obj if isinstance(obj, str) else json.dumps(obj, separators=(',', ':'))}\n\n".encode()
        return b"%x\r\n%s\r\n" % (len(data), data)

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    texts = [f"tok{i} " for i in range(chunks)]
    usage = {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}
    frames = [frame(chunk({"role": "assistant", "content": ""}))]
    frames += [frame(chunk({"content": t})) for t in texts]
    frames.append(frame(chunk({}, "stop")))
    frames.append(frame({**chunk({}), "choices": [], "usage": usage}))
    frames.append(frame("[DONE]") + b"0\r\n\r\n")
    whole = json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(texts)},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
        }
    ).encode()
    return frames, whole


class Upstream(asyncio.Protocol):
    def __init__(self, frames: list[bytes], whole: bytes, interval: float) -> None:
        self._frames = frames
        self._whole = whole
        self._interval = interval
        self._buffer = b""
        self._transport: asyncio.Transport | None = None
        self._busy = False
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        self._next()

    def _next(self) -> None:
        if self._busy:
            return
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buffer[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self._buffer) < end + 4 + length:
            return
        body = self._buffer[end + 4 : end + 4 + length]
        self._buffer = self._buffer[end + 4 + length :]
        if "/chat/completions" not in head.split(" ", 2)[1]:
            self._write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
            self._next()
            return
        self._busy = True
        if b'"stream":true' in body.replace(b" ", b""):
            self._write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            self._stream(0)
        else:
            self._loop.call_later(self._interval * (len(self._frames) - 1), self._answer)

    def _write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def _stream(self, index: int) -> None:
        self._write(self._frames[index])
        if index + 1 < len(self._frames):
            if self._interval:
                self._loop.call_later(self._interval, self._stream, index + 1)
            else:
                self._loop.call_soon(self._stream, index + 1)
            return
        self._done()

    def _answer(self) -> None:
        self._write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(self._whole), self._whole)
        )
        self._done()

    def _done(self) -> None:
        self._busy = False
        if self._transport is not None:
            self._next()


async def serve(host: str, port: int, chunks: int, interval: float) -> None:
    frames, whole = render(chunks)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Upstream(frames, whole, interval), host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.0005, help="seconds between two streamed chunks")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, args.chunks, args.interval))


if __name__ == "__main__":
    main()
