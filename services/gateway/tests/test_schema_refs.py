"""Client JSON Schemas with remote or file references never leave the gateway: the model server
behind generation would resolve them (a fetch on the caller's behalf)."""

import http.server
import threading

import pytest


@pytest.fixture
def listener():
    """A real loopback HTTP server that records any request a `$ref` would make."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"type": "string"}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/schema.json", hits
    server.shutdown()


def _chat(gateway, **extra):
    return {"model": gateway.model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize("where", ["response_format", "tools"])
@pytest.mark.parametrize("ref", ["remote", "file:///etc/passwd", "../../secrets.json"])
async def test_a_non_local_ref_is_refused_before_any_backend_sees_it(gateway, fake, listener, where, ref):
    url, hits = listener
    target = url if ref == "remote" else ref
    schema = {"type": "object", "properties": {"a": {"$ref": target}}}
    if where == "response_format":
        extra = {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}}
    else:
        extra = {"tools": [{"type": "function", "function": {"name": "f", "parameters": schema}}]}
    async with gateway.client() as client:
        reply = await client.post("/v1/chat/completions", json=_chat(gateway, **extra))
        assert reply.status_code == 400, reply.text
        error = reply.json()["error"]
        assert "$ref must point within the schema" in error["message"]
        assert error["type"] == "invalid_request_error"
        # The next request is served, and nothing was fetched or forwarded.
        ok = await client.post("/v1/chat/completions", json=_chat(gateway))
        assert ok.status_code == 200
    assert hits == []
    assert all("$ref" not in str(r["body"]) for r in fake.requests())


async def test_a_local_ref_still_passes(gateway, fake):
    schema = {
        "$defs": {"s": {"type": "string"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/s"}},
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    fake.script({"content": ['{"a": "b"}']})
    async with gateway.client() as client:
        reply = await client.post("/v1/chat/completions", json=_chat(gateway, response_format=fmt))
    assert reply.status_code == 200, reply.text


HOSTILE = {
    "a $ref cycle": {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
    "a $ref to no schema": {"type": "object", "required": ["a"], "allOf": [{"$ref": "#/required"}]},
}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("schema", HOSTILE.values(), ids=HOSTILE.keys())
async def test_a_schema_guardrails_cannot_use_is_refused_before_any_model_is_asked(
    gateway, fake, schema, stream
):
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    before = len(fake.requests())
    async with gateway.client() as client:
        reply = await client.post(
            "/v1/chat/completions", json=_chat(gateway, response_format=fmt, stream=stream)
        )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == "response_format", error
    assert "$ref" in error["message"]
    assert len(fake.requests()) == before
