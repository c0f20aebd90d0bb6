"""Chat over WebSocket with a real WebSocket client: same chunks as SSE, errors, cancel on close."""

import asyncio
import json
import logging

import pytest
from gateway_service.api.routes.ws import PATH
from gateway_service.api.sse_response import SSE_DONE
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


def ws_url(gateway) -> str:
    return gateway.url.replace("http://", "ws://") + PATH


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def request(model: str, text: str = "hello over a socket", **extra) -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], **extra})


async def receive_completion(ws) -> list[dict]:
    chunks = []
    for _ in range(1000):
        chunk = json.loads(await asyncio.wait_for(ws.recv(), 10))
        chunks.append(chunk)
        if "error" in chunk or chunk.get("choices") == []:
            return chunks
    raise AssertionError("no usage frame")


def frames(sse_bytes: bytes) -> list[bytes]:
    """The JSON payloads of SSE events; comments and [DONE] are SSE framing only."""
    out = []
    for block in sse_bytes.split(b"\n\n"):
        if block.startswith(b"data: ") and block + b"\n\n" != SSE_DONE:
            out.append(block[len(b"data: ") :])
    return out


def test_frames_are_the_sse_payloads():
    assert frames(b': keep-alive\n\ndata: {"a":1}\n\ndata: {"b":2}\n\ndata: [DONE]\n\n') == [
        b'{"a":1}',
        b'{"b":2}',
    ]


async def test_chunks_then_usage_frame_and_a_second_request_on_the_same_socket(gateway):
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
        for text in ("first question", "second question"):
            await ws.send(request(gateway.model, text))
            chunks = await receive_completion(ws)
            *deltas, finish, usage = chunks
            assert all(c["object"] == "chat.completion.chunk" for c in chunks)
            assert deltas[0]["choices"][0]["delta"]["role"] == "assistant"
            assert "".join(c["choices"][0]["delta"].get("content", "") for c in deltas).startswith(
                "You said: "
            )
            assert text.split()[0] in "".join(c["choices"][0]["delta"].get("content", "") for c in deltas)
            assert finish["choices"][0]["finish_reason"] == "stop"
            assert usage["choices"] == [] and usage["usage"]["total_tokens"] > 0
            assert len({c["id"] for c in chunks}) == 1


async def test_same_chunks_as_sse(gateway, fake):
    fake.script({"content": ["a", "b", "c"]}, {"content": ["a", "b", "c"]})
    body = {
        "model": gateway.model,
        "messages": [{"role": "user", "content": "x"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with gateway.client() as http:
        sse = await http.post("/v1/chat/completions", json=body)
    sse_chunks = [json.loads(p) for p in frames(sse.content)]
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
        await ws.send(request(gateway.model, "x"))
        ws_chunks = await receive_completion(ws)

    def shape(chunks):
        return [{k: v for k, v in c.items() if k not in ("id", "created")} for c in chunks]

    assert shape(ws_chunks) == shape(sse_chunks)


async def test_bad_key_is_refused_at_the_handshake(gateway):
    with pytest.raises((InvalidStatus, ConnectionClosed)) as info:
        async with connect(ws_url(gateway), additional_headers=auth("wrong")) as ws:
            await ws.recv()
    if isinstance(info.value, InvalidStatus):
        assert info.value.response.status_code == 401
    else:
        assert info.value.rcvd.code == 1008


async def test_invalid_request_is_an_error_frame_and_close_4400(gateway):
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
        await ws.send(json.dumps({"model": gateway.model, "messages": []}))
        error = json.loads(await ws.recv())
        assert error["error"]["param"] == "messages"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd.code == 4400


async def test_guardrails_block_is_4400_and_rate_limit_is_4429(start_gateway, fake):
    gw = await start_gateway(gateway_key_max_streams=1)
    async with connect(ws_url(gw), additional_headers=auth(gw.api_key)) as ws:
        await ws.send(request(gw.model, f"tell me about the {gw.denied_term}"))
        error = json.loads(await ws.recv())
        assert error["error"]["code"] == "content_policy_violation"
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 4400
    fake.script({"chunks": 20, "delay": 0.1})
    async with connect(ws_url(gw), additional_headers=auth(gw.api_key)) as busy:
        await busy.send(request(gw.model))
        await busy.recv()
        async with connect(ws_url(gw), additional_headers=auth(gw.api_key)) as ws:
            await ws.send(request(gw.model))
            error = json.loads(await ws.recv())
            assert error["error"]["code"] == "concurrency"
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
            assert closed.value.rcvd.code == 4429


async def test_closing_the_socket_cancels_generation(gateway, fake):
    fake.script({"chunks": 50, "delay": 0.2})
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
        await ws.send(request(gateway.model))
        await ws.recv()
    connection = (await fake.wait_until_closed(timeout=5))[-1]
    assert connection["state"] == "closed"
    assert connection["closed_by"] == "client" and connection["chunks_sent"] < 50


async def test_a_client_closing_right_after_the_usage_frame_is_not_an_error(gateway, caplog, monkeypatch):
    """Closing after the usage frame is how a client ends a socket. When the close arrived while
    the stream's watch for a client frame was still open, the close was consumed there and the
    next wait for a request failed: an error log and an ASGI traceback for a normal close. Here
    every asyncio.wait returns a little late, as on a busy gateway, so that the close lands in that
    window every time."""
    wait = asyncio.wait

    async def late_wait(*args, **kwargs):
        result = await wait(*args, **kwargs)
        await asyncio.sleep(0.05)
        return result

    monkeypatch.setattr(asyncio, "wait", late_wait)
    caplog.set_level(logging.INFO)
    for n in range(5):
        async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
            await ws.send(request(gateway.model, f"question {n}"))
            chunks = await receive_completion(ws)
            assert chunks[-1]["choices"] == []
    await asyncio.sleep(0.2)
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, [(r.name, r.getMessage(), r.exc_info and r.exc_info[1]) for r in errors]
