"""A scriptable OpenAI-compatible upstream for tests: real HTTP, scripted faults.

Run it as a process:

    python -m llmsuite_testkit.openai_upstream --host 127.0.0.1 --port 8099

or in-process from a test (uvicorn in a background thread, free port):

    with running_fake_upstream() as fake:
        fake.base_url            # "http://127.0.0.1:<port>/v1", for an OpenAI client or generation
        fake.script({"status": 429, "retry_after": "2"})
        fake.requests()[-1]["body"]["messages"]

HTTP API
- `POST /v1/chat/completions` (stream and non-stream), `GET /v1/models`.
  Without a script it answers deterministically: the reply is "You said: " and
  the first 12 words of the last user message, streamed in up to 5 chunks, with
  usage (prompt_tokens = words in all messages, completion_tokens = chunks) when
  `stream_options.include_usage` is true, then `data: [DONE]`. `max_tokens`
  below the chunk count cuts the reply to that many chunks (finish_reason
  "length"). Stop sequences are ignored.
- Scripting. A scenario is a JSON object (fields below, all optional). It is
  taken, in this order, from the request header `x-fake-scenario: <json>`, else
  the front of the queue, else the default scenario for the request's `model`,
  else the default scenario, else the echo above.
  - `POST /_script` with one scenario or a list: appended to the queue; each
    chat request consumes one.
  - `PUT /_script/default` with a scenario (or `null`): used when the queue is empty.
  - `PUT /_script/model/{model}` with a scenario (or `null`): the default for
    requests naming that upstream model, so one fake can play several deployments.
  - `PUT /_faults` with `{"every": N, "seed": S, "scenario": {...}}` (or `null`): a fault
    pattern over the chat requests from now on, taking precedence over all of the above. One
    request in each block of N answers `scenario` (default `{"status": 503}`, a failure before
    the first byte): the last of each block, or with `seed` a seeded position in each block
    (exactly 1/N of the requests, spread evenly, but not in step with clients taking turns).
    `every: 1` fails every request (a hard-down upstream). `GET /_faults`: the pattern and its
    counters, `{"pattern", "calls" (chat requests since it was set), "injected"}`.
  - `DELETE /_script`: empties the queue and drops every default and the fault pattern.
- `GET /_requests`: every chat request received, oldest first:
  `[{"id", "method", "path", "client" (peer "host:port", so connection reuse
  shows), "headers" (lower-case names, incl. traceparent and
  authorization), "body" (parsed JSON, or the raw text), "received_at"}]`.
  `DELETE /_requests` clears them.
- `GET /_connections`: `{"open": n, "total": n, "connections": [{"id" (= the request's id),
  "stream", "state": "open"|"closed", "closed_by": "complete"|
  "client"|"dropped", "response_complete", "chunks_sent", "opened_at", "closed_at"}]}`; "client"
  means the caller hung up before the response was complete. `DELETE` clears
  the closed ones.
Records keep the most recent `--max-records` (default 10000).

Scenario fields
- `status` (200), `body` (error body: JSON value or text; an OpenAI error
  envelope when omitted), `retry_after` (Retry-After header value), `headers`.
- `content`: list of chunk strings; or `chunks`: N generated chunks "tok0 "…;
  default: the echo above.
- `delay`: seconds between chunks; `stall`: seconds before anything (headers
  included) is sent; `stall_after_headers`: seconds between headers and the
  first chunk.
- `drop_after`: abort the TCP connection after N content chunks.
- `malformed_after`: after N content chunks send a data line of broken JSON.
- `error_after`: after N content chunks send `data: {"error": {...}}` and end
  (no `[DONE]`).
- `no_done`: end the stream cleanly without `data: [DONE]`.
- `usage` (true): false omits the usage chunk even when asked for.
- `tool_calls`: list of OpenAI `delta.tool_calls` entries, each sent as its own
  chunk after the content (e.g. a first piece with id and name, then argument pieces);
  a non-streamed answer carries them merged into whole calls in `message.tool_calls`.
- `ignore_max_tokens`: stream every chunk whatever `max_tokens` says, like a
  server that does not honour it.
- `finish_reason` ("stop"), `id` (response id).
- `split`: send the byte stream in pieces of at most this many bytes (1 = every
  byte alone, splitting lines, CRLFs and UTF-8 sequences); `split_seed`: random
  piece sizes 1..split from this seed; `piece_delay` (0.001 s) between pieces so
  they reach the client separately; `line_ending`: "\\n" (default), "\\r\\n" or "\\r".
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

SCENARIO_HEADER = "x-fake-scenario"
ECHO_WORDS = 12
ECHO_CHUNKS = 5
MAX_BODY_BYTES = 16 * 1024 * 1024


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int = Field(200, ge=100, le=599)
    body: Any = None
    retry_after: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    content: list[str] | None = Field(None, max_length=100_000)
    chunks: int | None = Field(None, ge=0, le=100_000)
    delay: float = Field(0.0, ge=0, le=600)
    stall: float = Field(0.0, ge=0, le=600)
    stall_after_headers: float = Field(0.0, ge=0, le=600)
    drop_after: int | None = Field(None, ge=0)
    malformed_after: int | None = Field(None, ge=0)
    error_after: int | None = Field(None, ge=0)
    no_done: bool = False
    usage: bool = True
    tool_calls: list[dict[str, Any]] | None = Field(None, max_length=10_000)
    ignore_max_tokens: bool = False
    finish_reason: str = "stop"
    id: str | None = None
    split: int | None = Field(None, ge=1)
    split_seed: int | None = None
    piece_delay: float = Field(0.001, ge=0, le=10)
    line_ending: Literal["\n", "\r\n", "\r"] = "\n"


class FaultPattern(BaseModel):
    model_config = ConfigDict(extra="forbid")

    every: int = Field(ge=1, le=1_000_000)
    seed: int | None = None
    scenario: Scenario = Field(default_factory=lambda: Scenario(status=503))


@dataclass
class _Faults:
    """A fault pattern and what it has done: one request in each block of `every` fails."""

    pattern: FaultPattern
    calls: int = 0
    injected: int = 0
    _position: int = -1
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.pattern.seed)

    def next_call(self) -> Scenario | None:
        """Counts a chat request; its scenario when the pattern picks it, else None."""
        every = self.pattern.every
        index = self.calls % every
        if index == 0:
            self._position = every - 1 if self.pattern.seed is None else self._rng.randrange(every)
        self.calls += 1
        if index != self._position:
            return None
        self.injected += 1
        return self.pattern.scenario

    def report(self) -> dict[str, Any]:
        return {"pattern": self.pattern.model_dump(), "calls": self.calls, "injected": self.injected}


class _DropConnection(Exception):
    """Raised after the response started so uvicorn aborts the connection mid-body."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _DropConnection))


@dataclass
class _Connection:
    id: int  # the id of its request in /_requests
    stream: bool
    opened_at: float
    state: str = "open"
    closed_by: str | None = None
    response_complete: bool = False
    chunks_sent: int = 0
    closed_at: float | None = None


@dataclass
class FakeState:
    max_records: int = 10_000
    queue: collections.deque[Scenario] = field(default_factory=collections.deque)
    default: Scenario | None = None
    model_defaults: dict[str, Scenario] = field(default_factory=dict)
    faults: _Faults | None = None
    requests: collections.deque[dict[str, Any]] = field(init=False)
    connections: collections.deque[_Connection] = field(init=False)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.requests = collections.deque(maxlen=self.max_records)
        self.connections = collections.deque(maxlen=self.max_records)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status_code=status, headers=headers, media_type="application/json")


def _error_envelope(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _echo_chunks(messages: list[Any]) -> list[str]:
    last_user = next(
        (
            _text_of(m.get("content"))
            for m in reversed(messages)
            if isinstance(m, dict) and m.get("role") == "user"
        ),
        "",
    )
    words = last_user.split()[:ECHO_WORDS]
    pieces = re.findall(r"\S+\s*", "You said: " + " ".join(words))
    groups = min(ECHO_CHUNKS, len(pieces))
    size, extra = divmod(len(pieces), groups)
    out, start = [], 0
    for i in range(groups):
        end = start + size + (1 if i < extra else 0)
        out.append("".join(pieces[start:end]))
        start = end
    return out


def _whole_tool_calls(pieces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Streamed tool-call pieces merged by index into the whole calls a non-streamed answer has."""
    calls: dict[int, dict[str, Any]] = {}
    for position, piece in enumerate(pieces):
        index = piece.get("index", position)
        function = piece.get("function") or {}
        call = calls.setdefault(
            index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        call["id"] = call["id"] or piece.get("id", "")
        call["type"] = piece.get("type") or call["type"]
        call["function"]["name"] = call["function"]["name"] or function.get("name", "")
        call["function"]["arguments"] += function.get("arguments", "")
    return [calls[i] for i in sorted(calls)]


def _prompt_words(messages: list[Any]) -> int:
    return sum(len(_text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))


class ChatCompletions:
    """Raw ASGI endpoint: it must watch for the client hanging up while it stalls or streams."""

    def __init__(self, state: FakeState) -> None:
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        raw = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            more = message.get("more_body", False)
            if len(raw) > MAX_BODY_BYTES:
                await self._send_json(send, 413, _error_envelope("body too large", "invalid_request_error"))
                return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        request_id = next(self.state.ids)
        self.state.requests.append(
            {
                "id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "client": "{}:{}".format(*(scope.get("client") or ("", ""))),
                "headers": headers,
                "body": body,
                "received_at": time.time(),
            }
        )
        try:
            scenario = self._scenario(headers, body.get("model") if isinstance(body, dict) else None)
        except (ValueError, ValidationError) as exc:
            await self._send_json(send, 400, _error_envelope(f"bad {SCENARIO_HEADER}: {exc}", "fake_error"))
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            await self._send_json(send, 400, _error_envelope("messages is required", "invalid_request_error"))
            return
        stream = bool(body.get("stream"))
        conn = _Connection(request_id, stream, time.time())
        self.state.connections.append(conn)
        producer = asyncio.ensure_future(self._respond(scenario, body, stream, conn, send))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            # Once the last body message is sent, uvicorn reports "disconnect" as well.
            if producer.done() or conn.response_complete:
                await producer
                conn.closed_by = "complete"
            else:
                conn.closed_by = "client"
                producer.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await producer
        except _DropConnection:
            conn.closed_by = "dropped"
            raise
        finally:
            watcher.cancel()
            conn.state = "closed"
            conn.closed_at = time.time()

    def _scenario(self, headers: dict[str, str], model: Any) -> Scenario:
        if self.state.faults is not None and (fault := self.state.faults.next_call()) is not None:
            return fault
        if SCENARIO_HEADER in headers:
            return Scenario.model_validate_json(headers[SCENARIO_HEADER])
        if self.state.queue:
            return self.state.queue.popleft()
        if isinstance(model, str) and model in self.state.model_defaults:
            return self.state.model_defaults[model]
        return self.state.default or Scenario()

    @staticmethod
    async def _send_json(send: Any, status: int, data: Any, extra: dict[str, str] | None = None) -> None:
        payload = data.encode() if isinstance(data, str) else json.dumps(data).encode()
        kind = b"text/plain" if isinstance(data, str) else b"application/json"
        headers = [(b"content-type", kind)] + [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    async def _respond(self, s: Scenario, body: dict, stream: bool, conn: _Connection, send: Any) -> None:
        if s.stall:
            await asyncio.sleep(s.stall)
        extra = dict(s.headers)
        if s.retry_after is not None:
            extra["retry-after"] = s.retry_after
        if s.status != 200:
            error = (
                s.body
                if s.body is not None
                else _error_envelope(
                    f"scripted status {s.status}",
                    "server_error" if s.status >= 500 else "invalid_request_error",
                )
            )
            conn.response_complete = True
            await self._send_json(send, s.status, error, extra)
            return
        answer = _Answer.of(s, body, conn)
        if stream:
            await self._send_stream(s, body, answer, extra, conn, send)
        else:
            await self._send_whole(s, answer, extra, conn, send)

    async def _send_whole(
        self, s: Scenario, answer: _Answer, extra: dict[str, str], conn: _Connection, send: Any
    ) -> None:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(answer.contents)}
        if s.tool_calls:
            message["tool_calls"] = _whole_tool_calls(s.tool_calls)
        reply = {
            "id": answer.ident,
            "object": "chat.completion",
            "created": answer.created,
            "model": answer.model,
            "choices": [{"index": 0, "message": message, "finish_reason": answer.finish}],
        }
        if s.usage:
            reply["usage"] = answer.usage
        if s.stall_after_headers:
            # Headers at once, the body later: an upstream still working on a whole answer.
            headers = [(b"content-type", b"application/json")]
            headers += [(k.encode(), v.encode()) for k, v in extra.items()]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await asyncio.sleep(s.stall_after_headers)
            conn.response_complete = True
            await send({"type": "http.response.body", "body": json.dumps(reply).encode()})
            return
        conn.response_complete = True
        await self._send_json(send, 200, reply, extra)

    async def _send_stream(
        self, s: Scenario, body: dict, answer: _Answer, extra: dict[str, str], conn: _Connection, send: Any
    ) -> None:
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        headers += [(k.encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        emit = _Emitter(s, send)
        await emit(answer.chunk({"role": "assistant", "content": ""}))
        if s.stall_after_headers:
            await asyncio.sleep(s.stall_after_headers)
        for i, text in enumerate(answer.contents):
            if i and s.delay:
                await asyncio.sleep(s.delay)
            if self._fault(s, i):
                return await self._inject(s, emit, send, conn)
            await emit(answer.chunk({"content": text}))
            conn.chunks_sent += 1
        if self._fault(s, len(answer.contents)):
            return await self._inject(s, emit, send, conn)
        for call in s.tool_calls or ():
            if s.delay:
                await asyncio.sleep(s.delay)
            await emit(answer.chunk({"tool_calls": [call]}))
            conn.chunks_sent += 1
        await emit(answer.chunk({}, answer.finish))
        options = body.get("stream_options")
        if s.usage and isinstance(options, dict) and options.get("include_usage"):
            await emit(
                json.dumps({**answer.envelope("chat.completion.chunk"), "choices": [], "usage": answer.usage})
            )
        if not s.no_done:
            await emit("[DONE]")
        conn.response_complete = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    def _fault(s: Scenario, sent: int) -> bool:
        return sent in (s.drop_after, s.malformed_after, s.error_after)

    @staticmethod
    async def _inject(s: Scenario, emit: Any, send: Any, conn: _Connection) -> None:
        if s.drop_after is not None:
            raise _DropConnection()
        if s.malformed_after is not None:
            await emit('{"choices": [{"delta": {"content": "brok')
        else:
            await emit(json.dumps(_error_envelope("scripted failure mid-stream", "server_error", "scripted")))
        # Both end the body cleanly and without [DONE]; the caller must notice.
        conn.response_complete = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@dataclass
class _Answer:
    """What one scripted answer says, whole or streamed."""

    ident: str
    model: str
    created: int
    contents: list[str]
    finish: str | None
    usage: dict[str, int]

    @classmethod
    def of(cls, s: Scenario, body: dict, conn: _Connection) -> _Answer:
        messages = body["messages"]
        if s.content is not None:
            contents = list(s.content)
        elif s.chunks is not None:
            contents = [f"tok{i} " for i in range(s.chunks)]
        else:
            contents = _echo_chunks(messages)
        finish = s.finish_reason
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and 0 < max_tokens < len(contents) and not s.ignore_max_tokens:
            contents, finish = contents[:max_tokens], "length"
        prompt = _prompt_words(messages)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(contents),
            "total_tokens": prompt + len(contents),
        }
        return cls(
            s.id or f"chatcmpl-fake-{conn.id}",
            body.get("model", ""),
            int(time.time()),
            contents,
            finish,
            usage,
        )

    def envelope(self, kind: str) -> dict[str, Any]:
        return {"id": self.ident, "object": kind, "created": self.created, "model": self.model}

    def chunk(self, delta: dict, finish_reason: str | None = None) -> str:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
        return json.dumps({**self.envelope("chat.completion.chunk"), "choices": choices}, ensure_ascii=False)


class _Emitter:
    """Writes one SSE event, whole or cut into scripted pieces (split, split_seed, piece_delay)."""

    def __init__(self, s: Scenario, send: Any) -> None:
        self._s, self._send = s, send
        self._rng = random.Random(s.split_seed)

    async def __call__(self, data: str) -> None:
        s, eol = self._s, self._s.line_ending
        frame = f"data: {data}{eol}{eol}".encode()
        if s.split is None:
            await self._send({"type": "http.response.body", "body": frame, "more_body": True})
            return
        at = 0
        while at < len(frame):
            size = self._rng.randint(1, s.split) if s.split_seed is not None else s.split
            await self._send({"type": "http.response.body", "body": frame[at : at + size], "more_body": True})
            at += size
            if s.piece_delay:
                await asyncio.sleep(s.piece_delay)


async def _wait_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _state(request: Request) -> FakeState:
    state: FakeState = request.app.state.fake
    return state


async def _list_models(request: Request) -> Response:
    data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in request.app.state.models]
    return _json({"object": "list", "data": data})


async def _script(request: Request) -> Response:
    state = _state(request)
    try:
        data = await request.json()
        items = data if isinstance(data, list) else [data]
        scenarios = [Scenario.model_validate(item) for item in items]
    except (ValueError, ValidationError) as exc:
        return _json({"error": str(exc)}, 400)
    state.queue.extend(scenarios)
    return _json({"queued": len(state.queue)})


async def _set_default(request: Request) -> Response:
    state = _state(request)
    try:
        data = await request.json()
        state.default = None if data is None else Scenario.model_validate(data)
    except (ValueError, ValidationError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"default": None if state.default is None else state.default.model_dump()})


async def _set_model_default(request: Request) -> Response:
    state, model = _state(request), request.path_params["model"]
    try:
        data = await request.json()
        if data is None:
            state.model_defaults.pop(model, None)
        else:
            state.model_defaults[model] = Scenario.model_validate(data)
    except (ValueError, ValidationError) as exc:
        return _json({"error": str(exc)}, 400)
    return _json({"models": sorted(state.model_defaults)})


async def _reset_script(request: Request) -> Response:
    state = _state(request)
    state.queue.clear()
    state.default = None
    state.model_defaults.clear()
    state.faults = None
    return _json({"queued": 0})


async def _faults(request: Request) -> Response:
    state = _state(request)
    if request.method == "PUT":
        try:
            data = await request.json()
            state.faults = None if data is None else _Faults(FaultPattern.model_validate(data))
        except (ValueError, ValidationError) as exc:
            return _json({"error": str(exc)}, 400)
    return _json(None if state.faults is None else state.faults.report())


async def _requests(request: Request) -> Response:
    state = _state(request)
    if request.method == "DELETE":
        state.requests.clear()
        return _json({"cleared": True})
    return _json(list(state.requests))


async def _connections(request: Request) -> Response:
    state = _state(request)
    if request.method == "DELETE":
        still_open = [c for c in state.connections if c.state == "open"]
        state.connections.clear()
        state.connections.extend(still_open)
    items = [vars(c) for c in state.connections]
    return _json(
        {"open": sum(c["state"] == "open" for c in items), "total": len(items), "connections": items}
    )


def create_app(*, models: list[str] | None = None, max_records: int = 10_000) -> Starlette:
    state = FakeState(max_records=max_records)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", ChatCompletions(state), methods=["POST"]),
            Route("/v1/models", _list_models, methods=["GET"]),
            Route("/_script", _script, methods=["POST"]),
            Route("/_script", _reset_script, methods=["DELETE"]),
            Route("/_script/default", _set_default, methods=["PUT"]),
            Route("/_script/model/{model:path}", _set_model_default, methods=["PUT"]),
            Route("/_faults", _faults, methods=["GET", "PUT"]),
            Route("/_requests", _requests, methods=["GET", "DELETE"]),
            Route("/_connections", _connections, methods=["GET", "DELETE"]),
        ]
    )
    app.state.fake = state
    app.state.models = models or ["gemma-3-270m"]
    return app


def _quiet_drops() -> None:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class FakeUpstream:
    """A running fake plus a small synchronous client for its control endpoints."""

    def __init__(self, root_url: str) -> None:
        self.root_url = root_url
        self.base_url = root_url + "/v1"
        self._http = httpx.Client(base_url=root_url, timeout=5.0, trust_env=False)

    def script(self, *scenarios: dict[str, Any]) -> None:
        self._http.post("/_script", json=list(scenarios)).raise_for_status()

    def set_default(self, scenario: dict[str, Any] | None) -> None:
        # json=None would send no body at all; the API takes a JSON null.
        self._http.put("/_script/default", content=json.dumps(scenario)).raise_for_status()

    def set_model_default(self, model: str, scenario: dict[str, Any] | None) -> None:
        self._http.put(f"/_script/model/{model}", content=json.dumps(scenario)).raise_for_status()

    def set_faults(
        self, every: int | None, *, seed: int | None = None, scenario: dict[str, Any] | None = None
    ) -> None:
        """One chat request in each block of `every` answers `scenario` (a 503 unless given);
        None removes the pattern. See `PUT /_faults`."""
        pattern: dict[str, Any] | None = None
        if every is not None:
            pattern = {"every": every, "seed": seed}
            if scenario is not None:
                pattern["scenario"] = scenario
        self._http.put("/_faults", content=json.dumps(pattern)).raise_for_status()

    def faults(self) -> dict[str, Any] | None:
        """`{"pattern", "calls", "injected"}` of the fault pattern, or None when there is none."""
        result: dict[str, Any] | None = self._http.get("/_faults").raise_for_status().json()
        return result

    def reset(self) -> None:
        self._http.delete("/_script").raise_for_status()
        self._http.delete("/_requests").raise_for_status()
        self._http.delete("/_connections").raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return self._http.get("/_requests").raise_for_status().json()

    def clear_requests(self) -> None:
        self._http.delete("/_requests").raise_for_status()

    def connections(self) -> dict[str, Any]:
        return self._http.get("/_connections").raise_for_status().json()

    async def wait_until_closed(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """The connections once there is one and none is open; fails if one stays open past `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.connections()
            if state["total"] and not state["open"]:
                return state["connections"]
            assert time.monotonic() < deadline, f"upstream connection still open after {timeout} s: {state}"
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self._http.close()


@contextlib.contextmanager
def running_fake_upstream(
    host: str = "127.0.0.1", port: int = 0, **app_options: Any
) -> Iterator[FakeUpstream]:
    """Serve a fake in a background thread (its own event loop) until the block ends."""
    _quiet_drops()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(**app_options),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fake-upstream", daemon=True
    )
    thread.start()
    for _ in range(500):
        if server.started or not thread.is_alive():
            break
        time.sleep(0.01)
    if not server.started:
        raise RuntimeError("fake upstream did not start within 5 s")
    fake = FakeUpstream(f"http://{host}:{bound_port}")
    try:
        yield fake
    finally:
        fake.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Scriptable OpenAI-compatible upstream for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--models", default="gemma-3-270m", help="comma-separated ids for /v1/models")
    parser.add_argument("--max-records", type=int, default=10_000)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    _quiet_drops()
    uvicorn.run(
        create_app(models=[m for m in args.models.split(",") if m], max_records=args.max_records),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )


if __name__ == "__main__":
    main()
