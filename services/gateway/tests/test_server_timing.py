"""Server-Timing on chat completions, error classes (HTTP and WebSocket) and OpenMetrics on /metrics,
over a real gateway with real guardrails and generation (on the scripted fake upstream)."""

import asyncio
import re
import time

import orjson
import pytest
from gateway_service.api.errors import ERROR_CLASSES, ApiError, error_class
from gateway_service.api.routes.ws import PATH
from gateway_service.api.server_timing import HopTimes
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

ROUTE = "/v1/chat/completions"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
# One metric of the Server-Timing grammar: token *( ";" param ), params dur=<number> and desc=<quoted>.
ENTRY = re.compile(r'^(?P<name>[a-z]+);dur=(?P<dur>\d+\.\d{3});desc="(?P<desc>[^"\\]*)"$')


def server_timing(header: str) -> dict[str, float]:
    """Entry name -> duration in ms, in header order; fails on anything off the spec's format."""
    out: dict[str, float] = {}
    for entry in header.split(", "):
        match = ENTRY.match(entry)
        assert match, entry
        out[match["name"]] = float(match["dur"])
    return out


def chat(gateway, **extra) -> dict:
    return {"model": gateway.model, "messages": [{"role": "user", "content": "hello there friend"}], **extra}


async def error_counts(c) -> dict[str, float]:
    text = (await c.get("/metrics")).text
    return {
        s.labels["class"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "llmsuite_gateway_errors_total"
    }


def test_header_lists_hops_in_order_with_the_gateway_last():
    hops = HopTimes()
    hops.add("generation", 0.0125)
    hops.add("auth", 0.0001)
    hops.add("guardrails", 0.002)
    hops.add("guardrails", 0.001)
    header = hops.header(0.00042).decode()
    assert server_timing(header) == {"auth": 0.1, "guardrails": 3.0, "generation": 12.5, "gateway": 0.42}


@pytest.mark.parametrize(
    ("err", "expected"),
    [
        (ApiError(504, "late", code="timeout"), "timeout"),
        (ApiError(504, "late", code="timeout", upstream=True), "timeout"),
        (ApiError(429, "slow down", code="key_rpm"), "rate_limited"),
        (ApiError(429, "upstream busy", upstream=True), "rate_limited"),
        (ApiError(400, "blocked", code="content_policy_violation"), "guardrail_blocked"),
        (ApiError(404, "no such model", code="model_not_found", upstream=True), "upstream_4xx"),
        (ApiError(503, "down", upstream=True), "upstream_5xx"),
        (ApiError(502, "stream ended early", code="upstream_error"), "upstream_5xx"),
        (ApiError(400, "bad body", code="invalid_json"), "validation"),
        (ApiError(413, "too large"), "validation"),
        (ApiError(401, "no key"), None),
        (ApiError(500, "internal error"), None),
    ],
)
def test_every_error_has_one_class(err, expected):
    assert error_class(err) == expected
    assert expected is None or expected in ERROR_CLASSES


async def test_non_streamed_chat_times_every_hop(gateway, fake):
    async with gateway.client() as c:
        response = await c.post(ROUTE, json=chat(gateway))
    assert response.status_code == 200, response.text
    timings = server_timing(response.headers["server-timing"])
    # No retrieval was asked for, so it has no entry.
    assert list(timings) == ["auth", "limits", "guardrails", "generation", "gateway"]
    # `gateway` is the same measurement as x-gateway-overhead-ms.
    assert timings["gateway"] == float(response.headers["x-gateway-overhead-ms"])


async def test_stream_headers_carry_the_time_to_the_first_token(gateway, fake):
    async with gateway.client() as c:
        async with c.stream("POST", ROUTE, json=chat(gateway, stream=True)) as response:
            assert response.status_code == 200
            timings = server_timing(response.headers["server-timing"])
            await response.aread()
    assert list(timings) == ["auth", "limits", "guardrails", "generation", "gateway"]


async def test_a_stream_whose_first_token_comes_after_the_headers_has_no_generation_entry(
    start_gateway, fake
):
    gateway = await start_gateway(gateway_keepalive_seconds=0.05)
    fake.script({"stall": 1.0})
    async with gateway.client() as c:
        async with c.stream("POST", ROUTE, json=chat(gateway, stream=True)) as response:
            timings = server_timing(response.headers["server-timing"])
            body = await response.aread()
    assert body.rstrip().endswith(b"data: [DONE]")
    assert list(timings) == ["auth", "limits", "guardrails", "gateway"]


async def test_a_refused_key_is_timed_too(gateway):
    async with gateway.client(api_key="sk-nobody") as c:
        response = await c.post(ROUTE, json=chat(gateway))
    assert response.status_code == 401
    assert list(server_timing(response.headers["server-timing"])) == ["auth", "gateway"]


async def test_errors_are_counted_by_class(gateway, fake):
    async with gateway.client() as c:
        before = await error_counts(c)
        assert set(before) == set(ERROR_CLASSES)
        invalid = await c.post(ROUTE, json={"model": gateway.model, "messages": "not a list"})
        blocked = await c.post(
            ROUTE, json={**chat(gateway), "messages": [{"role": "user", "content": gateway.denied_term}]}
        )
        # The upstream refuses the request: generation relays it, without retrying.
        fake.script({"status": 400})
        refused = await c.post(ROUTE, json=chat(gateway))
        after = await error_counts(c)
    assert (invalid.status_code, blocked.status_code, refused.status_code) == (400, 400, 400)
    moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert moved == {"validation": 1, "guardrail_blocked": 1, "upstream_4xx": 1}


async def test_a_client_that_leaves_mid_stream_is_counted_as_cancelled(gateway, fake):
    async with gateway.client() as c:
        before = await error_counts(c)
    fake.script({"chunks": 50, "delay": 0.2})
    async with gateway.client() as c:
        async with c.stream("POST", ROUTE, json=chat(gateway, stream=True)) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break
    async with gateway.client() as c:
        moved: dict[str, float] = {}
        deadline = time.monotonic() + 10
        # The gateway notices the disconnect on its next write; poll until it has counted it.
        while time.monotonic() < deadline and not moved:
            after = await error_counts(c)
            moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            await asyncio.sleep(0.05)
    assert moved == {"cancelled": 1}


async def test_metrics_negotiate_openmetrics(gateway):
    async with gateway.client(api_key=None) as c:
        plain = await c.get("/metrics")
        negotiated = await c.get("/metrics", headers={"accept": OPENMETRICS})
    assert plain.headers["content-type"].startswith("text/plain")
    assert negotiated.headers["content-type"].startswith("application/openmetrics-text")
    assert negotiated.text.endswith("# EOF\n")
    names = {f.name for f in openmetrics_families(negotiated.text)}
    assert {"llmsuite_gateway_errors", "llmsuite_gateway_request_duration_seconds"} <= names


async def test_websocket_errors_are_counted_by_the_same_classes(gateway, fake):
    url = gateway.url.replace("http://", "ws://") + PATH
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    async with gateway.client() as c:
        before = await error_counts(c)
    blocked = {"model": gateway.model, "messages": [{"role": "user", "content": gateway.denied_term}]}
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(orjson.dumps(blocked).decode())
        assert "error" in orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
    fake.script({"chunks": 50, "delay": 0.2})
    async with connect(url, additional_headers=headers) as ws:
        await ws.send(orjson.dumps(chat(gateway)).decode())
        await asyncio.wait_for(ws.recv(), 10)
    async with gateway.client() as c:
        moved: dict[str, float] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and moved.get("cancelled") != 1:
            after = await error_counts(c)
            moved = {k: after[k] - before[k] for k in after if after[k] != before[k]}
            await asyncio.sleep(0.05)
    assert moved == {"guardrail_blocked": 1, "cancelled": 1}
