import httpx
import orjson
from gateway_service.api.body_limit import BodySizeLimitMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

LIMIT = 100


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    body = await Request(scope, receive).body()
    await Response(str(len(body)))(scope, receive, send)


def client() -> httpx.AsyncClient:
    app = BodySizeLimitMiddleware(echo_length, max_bytes=LIMIT)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def chunks(total: int, size: int = 30):
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    error = orjson.loads(response.content)["error"]
    assert error["code"] == "request_too_large"
    assert error["type"] == "invalid_request_error"
    assert str(LIMIT) in error["message"]


async def test_body_at_the_limit_passes():
    async with client() as c:
        response = await c.post("/", content=b"x" * LIMIT)
    assert (response.status_code, response.text) == (200, str(LIMIT))


async def test_declared_length_over_the_limit_is_refused_before_reading():
    async with client() as c:
        assert_too_large(await c.post("/", content=b"x" * (LIMIT + 1)))


async def test_chunked_body_over_the_limit_is_refused():
    async with client() as c:
        response = await c.post("/", content=chunks(LIMIT * 3))
    assert "content-length" not in response.request.headers
    assert_too_large(response)


async def test_chunked_body_under_the_limit_passes():
    async with client() as c:
        response = await c.post("/", content=chunks(LIMIT - 1))
    assert response.text == str(LIMIT - 1)


async def test_malformed_content_length_is_a_bad_request():
    async with client() as c:
        response = await c.post("/", content=b"x", headers={"content-length": "1x"})
    assert response.status_code == 400
    assert orjson.loads(response.content)["error"]["type"] == "invalid_request_error"
