import logging
import time

import httpx
import orjson
from gateway_service.api.access_middleware import AccessMiddleware
from gateway_service.metrics import GatewayMetrics
from llmsuite_common.request_context import request_id_var
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

SECRET = "sk-should-never-be-logged"


async def fails(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("database password is hunter2")


async def answers(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse(request_id_var.get())(scope, receive, send)


def client(app) -> tuple[httpx.AsyncClient, GatewayMetrics]:
    metrics = GatewayMetrics()
    transport = httpx.ASGITransport(app=AccessMiddleware(app, metrics), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway"), metrics


async def test_unexpected_exception_is_a_500_envelope_without_internals(caplog):
    c, metrics = client(fails)
    with caplog.at_level(logging.INFO):
        async with c:
            response = await c.get("/boom", headers={"x-request-id": "rid-500"})
    assert response.status_code == 500
    assert orjson.loads(response.content) == {
        "error": {
            "message": "internal error",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert "hunter2" not in response.text
    assert response.headers["x-request-id"] == "rid-500"
    assert 'status="500"' in metrics.render().decode()


async def test_request_id_is_bound_for_the_request_and_echoed():
    c, _ = client(answers)
    async with c:
        response = await c.get("/", headers={"x-request-id": "abc.1"})
    assert response.text == "abc.1"
    assert response.headers["x-request-id"] == "abc.1"
    assert request_id_var.get() == ""


async def test_one_access_line_per_request_without_headers_or_query(caplog):
    c, _ = client(answers)
    with caplog.at_level(logging.INFO, logger="gateway.access"):
        async with c:
            await c.post("/v1/x?key=" + SECRET, headers={"authorization": f"Bearer {SECRET}"}, content=SECRET)
    lines = [r for r in caplog.records if r.name == "gateway.access"]
    assert len(lines) == 1
    record = lines[0]
    assert (record.method, record.path, record.status) == ("POST", "/v1/x", 200)
    assert record.duration_ms >= 0
    assert SECRET not in str(record.__dict__)


async def test_overhead_header_excludes_backend_waits(gateway, fake):
    fake.script({"content": ["slow"], "stall": 0.3})
    async with gateway.client() as http:
        started = time.perf_counter()
        response = await http.post(
            "/v1/chat/completions",
            json={"model": gateway.model, "messages": [{"role": "user", "content": "hi"}]},
        )
        total_ms = (time.perf_counter() - started) * 1000
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 200
    overhead = float(response.headers["x-gateway-overhead-ms"])
    # The upstream stalled 300 ms; none of that is the gateway's.
    assert 0 <= overhead < total_ms - 300
    assert "llmsuite_gateway_overhead_seconds_count" in metrics
