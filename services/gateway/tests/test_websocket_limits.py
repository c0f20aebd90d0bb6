"""What the chat WebSocket refuses, and when it closes on its own: binary frames (1003), oversized
frames (1009), a NUL in a frame (4400), an idle socket (1000), a revoked key (1008), idle or
mid-stream. After each, the gateway still serves the next socket."""

import asyncio
import json
import secrets
import time

import pytest
from gateway_service.api.routes.ws import MAX_FRAME_BYTES, PATH
from gateway_service.api.text_guard import CODE
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

CLOSE_WAIT_SECONDS = 10


def ws_url(gateway) -> str:
    return gateway.url.replace("http://", "ws://") + PATH


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def request(model: str, text: str = "hello over a socket") -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})


async def error_then_close(ws) -> tuple[dict, int]:
    error = json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS)
    return error["error"], closed.value.rcvd.code


async def assert_serves(gateway, key: str | None = None) -> None:
    async with connect(ws_url(gateway), additional_headers=auth(key or gateway.api_key)) as ws:
        await ws.send(request(gateway.model))
        for _ in range(1000):
            chunk = json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS))
            assert "error" not in chunk, chunk
            if chunk.get("choices") == []:
                assert chunk["usage"]["total_tokens"] > 0
                return
    raise AssertionError("no usage frame")


async def test_a_binary_frame_is_closed_1003_with_an_error_frame(gateway, fake):
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
        await ws.send(request(gateway.model).encode())  # bytes: a binary frame
        error, code = await error_then_close(ws)
    assert code == 1003
    assert error["code"] == "unsupported_frame" and error["type"] == "invalid_request_error"
    assert fake.requests() == []
    await assert_serves(gateway)


async def test_an_oversized_frame_is_closed_1009(gateway, fake):
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key), max_size=None) as ws:
        await ws.send(request(gateway.model, "x" * (MAX_FRAME_BYTES + 1)))
        error, code = await error_then_close(ws)
    assert code == 1009
    assert error["code"] == "request_too_large"
    assert fake.requests() == []
    await assert_serves(gateway)


async def test_a_nul_in_a_frame_is_an_error_frame_and_4400(gateway, fake):
    async with connect(ws_url(gateway), additional_headers=auth(gateway.api_key)) as ws:
        await ws.send(request(gateway.model, "a\u0000b"))  # json.dumps writes it as \u0000
        error, code = await error_then_close(ws)
    assert code == 4400
    assert error["code"] == CODE and error["param"] == "messages[0].content"
    assert fake.requests() == []
    await assert_serves(gateway)


async def test_an_idle_socket_is_closed_after_the_idle_timeout(start_gateway, fake):
    gw = await start_gateway(gateway_ws_idle_timeout_seconds=0.5)
    async with connect(ws_url(gw), additional_headers=auth(gw.api_key)) as ws:
        # A request resets the clock: the idle time counts from the end of the last one.
        await ws.send(request(gw.model))
        while json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS)).get("choices") != []:
            pass
        started = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS)
        idle = time.monotonic() - started
    assert closed.value.rcvd.code == 1000 and closed.value.rcvd.reason == "idle timeout"
    assert 0.4 <= idle < 3, idle
    await assert_serves(gw)


async def _member_key(http, org: str) -> dict:
    assert (await http.post("/v1/admin/orgs", json={"id": org})).status_code == 201
    created = await http.post("/v1/admin/keys", json={"org_id": org, "name": "socket"})
    assert created.status_code == 201, created.text
    return created.json()


async def test_a_revoked_keys_open_socket_is_closed_1008_within_the_key_cache_ttl(
    start_gateway, postgres_dsn, fake
):
    ttl = 0.4
    gw = await start_gateway(gateway_database_url=postgres_dsn, gateway_key_cache_ttl_seconds=ttl)
    async with gw.client() as root:
        key = await _member_key(root, "org-" + secrets.token_hex(4))
        other = await _member_key(root, "org-" + secrets.token_hex(4))
    async with connect(ws_url(gw), additional_headers=auth(key["key"])) as ws:
        await ws.send(request(gw.model))
        while json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS)).get("choices") != []:
            pass
        async with gw.client() as root:
            revoked = await root.delete(f"/v1/admin/keys/{key['id']}")
            assert revoked.status_code == 200
        started = time.monotonic()
        error, code = await error_then_close(ws)
        took = time.monotonic() - started
    assert code == 1008
    assert error["code"] == "invalid_api_key"
    assert took <= ttl + 0.5, took
    # Another tenant's key, and the revoked key's own handshake, are judged as before.
    await assert_serves(gw, other["key"])
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(gw), additional_headers=auth(key["key"])):
            pass
    assert refused.value.response.status_code == 401


async def test_a_key_revoked_mid_stream_is_closed_1008_and_its_generation_cancelled(
    start_gateway, postgres_dsn, fake
):
    ttl = 0.4
    gw = await start_gateway(gateway_database_url=postgres_dsn, gateway_key_cache_ttl_seconds=ttl)
    async with gw.client() as root:
        key = await _member_key(root, "org-" + secrets.token_hex(4))
    fake.script({"chunks": 100, "delay": 0.1})  # ten seconds of stream
    async with connect(ws_url(gw), additional_headers=auth(key["key"])) as ws:
        await ws.send(request(gw.model))
        first = json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS))
        assert first["object"] == "chat.completion.chunk"
        async with gw.client() as root:
            assert (await root.delete(f"/v1/admin/keys/{key['id']}")).status_code == 200
        started = time.monotonic()
        for _ in range(1000):
            frame = json.loads(await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS))
            if "error" in frame:
                break
        assert frame["error"]["code"] == "invalid_api_key"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), CLOSE_WAIT_SECONDS)
        took = time.monotonic() - started
    assert closed.value.rcvd.code == 1008
    assert took <= ttl + 0.5, took
    # The upstream stream was abandoned by the gateway, not read to its end.
    connection = (await fake.wait_until_closed(timeout=3))[-1]
    assert connection["closed_by"] == "client" and not connection["response_complete"]
    assert connection["chunks_sent"] < 100
