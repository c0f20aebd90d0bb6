"""A finished request leaves nothing for the garbage collector: its objects go when their last
reference does. A reference cycle would keep each request's objects (request, admission, tallies,
the server's connection state) until a full collection, which under load ran about once a second
and walked the whole heap for 50-100 ms while every request waited."""

import gc

import pytest

from services.gateway.tests.conftest import RunningGateway

REQUESTS = 6


def _gateway_objects(objects: list[object]) -> list[str]:
    """What of the collector's finds belongs to the gateway or to the HTTP server running it."""
    names = []
    for obj in objects:
        kind = type(obj)
        if kind.__module__.startswith(("gateway_service", "uvicorn", "starlette", "fastapi")):
            names.append(f"{kind.__module__}.{kind.__qualname__}")
    return sorted(set(names))


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "non-stream"])
async def test_a_finished_request_leaves_no_reference_cycle(gateway: RunningGateway, stream: bool) -> None:
    body = {"model": gateway.model, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    async with gateway.client() as client:
        # The first requests fill caches (keys, policies, channels) that live on.
        for _ in range(2):
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(REQUESTS):
                reply = await client.post("/v1/chat/completions", json=body)
                assert reply.status_code == 200
                assert (b"data: [DONE]" in reply.content) is stream
            gc.collect()
            found = _gateway_objects(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
    assert found == []
