"""response_format JSON Schemas from callers: no reference is ever fetched, size and depth are
bounded, and every refusal is INVALID_ARGUMENT about `response_format` on a server that keeps
answering."""

import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from guardrails_service.app import GuardrailsApp
from guardrails_service.metrics import GuardrailsMetrics
from guardrails_service.settings import GuardrailsSettings
from llmsuite.common.v1 import common_pb2
from llmsuite.guardrails.v1 import guardrails_pb2 as pb
from llmsuite.guardrails.v1 import guardrails_pb2_grpc
from llmsuite_common.errors import read_error_detail
from prometheus_client import CollectorRegistry

from tests.service_auth import AUTHORITY, serving, tenant_channel

CTX = common_pb2.RequestContext(request_id="r1", org_id="schemas")
GOOD = json.dumps({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


class SchemaHost:
    """A real HTTP server on loopback that would serve a schema, and remembers every request."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                host.requests.append(self.path)
                body = b'{"type": "string"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/schema+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def schema_host() -> Iterator[SchemaHost]:
    host = SchemaHost()
    yield host
    host.close()


@contextlib.asynccontextmanager
async def served(settings: GuardrailsSettings) -> AsyncIterator[guardrails_pb2_grpc.GuardrailsServiceStub]:
    app = GuardrailsApp(settings, GuardrailsMetrics(CollectorRegistry()))
    async with serving(app) as port, tenant_channel(f"127.0.0.1:{port}", AUTHORITY, app.audience) as channel:
        yield guardrails_pb2_grpc.GuardrailsServiceStub(channel)


@pytest.fixture
async def stub():
    async with served(GuardrailsSettings()) as stub:
        yield stub


async def refused(stub, schema: str, *, text: str = '{"city": "Paris"}') -> str:  # type: ignore[no-untyped-def]
    """The message of the INVALID_ARGUMENT the schema gets; checks the server still answers after."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.ValidateStructuredOutput(
            pb.ValidateStructuredOutputRequest(context=CTX, text=text, json_schema=schema), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = read_error_detail(info.value)
    assert detail is not None and (detail.code, detail.param) == ("invalid_request", "response_format")
    assert detail.message == info.value.details()
    ok = await stub.ValidateStructuredOutput(
        pb.ValidateStructuredOutputRequest(context=CTX, text='{"city": "Oslo"}', json_schema=GOOD), timeout=10
    )
    assert ok.valid
    return detail.message


async def test_a_remote_ref_is_refused_and_never_fetched(stub, schema_host: SchemaHost):
    schema = {"type": "object", "properties": {"city": {"$ref": f"{schema_host.url}/city.json"}}}
    message = await refused(stub, json.dumps(schema))
    assert "$ref must point within the schema" in message
    assert schema_host.requests == []


async def test_a_relative_ref_against_a_remote_id_is_refused_and_never_fetched(stub, schema_host: SchemaHost):
    schema = {
        "$id": f"{schema_host.url}/root.json",
        "type": "object",
        "properties": {"city": {"$ref": "city.json"}},
    }
    assert "$ref must point within the schema" in await refused(stub, json.dumps(schema))
    assert schema_host.requests == []


async def test_a_fragment_ref_under_a_remote_id_resolves_locally_or_not_at_all(stub, schema_host: SchemaHost):
    # Passes the '#' rule, yet resolves against another base: the registry must refuse to fetch it.
    inner = {"$id": f"{schema_host.url}/city.json", "$ref": "#/$defs/name"}
    schema = {"type": "object", "properties": {"city": inner}}
    assert "does not resolve within the schema" in await refused(stub, json.dumps(schema))
    assert schema_host.requests == []


async def test_a_remote_dynamic_ref_is_refused_and_never_fetched(stub, schema_host: SchemaHost):
    schema = {"type": "object", "properties": {"city": {"$dynamicRef": f"{schema_host.url}/city.json#meta"}}}
    assert "$dynamicRef must point within the schema" in await refused(stub, json.dumps(schema))
    assert schema_host.requests == []


async def test_a_file_ref_is_refused(stub, tmp_path: Path):
    (tmp_path / "city.json").write_text('{"type": "string"}')
    schema = {"type": "object", "properties": {"city": {"$ref": (tmp_path / "city.json").as_uri()}}}
    assert "$ref must point within the schema" in await refused(stub, json.dumps(schema))


async def test_local_refs_still_work(stub):
    schema = {
        "$defs": {"city": {"type": "string", "minLength": 2}},
        "type": "object",
        "properties": {"city": {"$ref": "#/$defs/city"}},
    }
    reply = await stub.ValidateStructuredOutput(
        pb.ValidateStructuredOutputRequest(context=CTX, text='{"city": "X"}', json_schema=json.dumps(schema)),
        timeout=10,
    )
    assert not reply.valid and reply.errors == ["city: 'X' is too short"]


def nested(levels: int) -> str:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return json.dumps(schema)


async def test_a_schema_nested_past_the_depth_limit_is_refused(stub):
    # Each level is two JSON levels deep (the schema and its "properties"): 40 levels are 81 deep.
    assert "nested more than 64 levels deep" in await refused(stub, nested(40))
    answer: object = "x"
    for _ in range(30):
        answer = {"a": answer}
    reply = await stub.ValidateStructuredOutput(
        pb.ValidateStructuredOutputRequest(context=CTX, text=json.dumps(answer), json_schema=nested(30)),
        timeout=10,
    )
    assert reply.valid and not reply.errors


async def test_a_schema_nested_past_the_json_parser_is_refused(stub):
    deep = '{"enum": [' + "[" * 30_000 + "]" * 30_000 + "]}"
    assert "nested more than 64 levels deep" in await refused(stub, deep)


async def test_an_oversized_schema_is_refused(stub):
    schema = {"type": "object", "description": "x" * (64 * 1024)}
    assert "at most 65536 are accepted" in await refused(stub, json.dumps(schema))


async def test_a_ref_cycle_is_refused(stub):
    cycle = {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}
    assert "($ref cycle)" in await refused(stub, json.dumps(cycle))
    assert "($ref cycle)" in await refused(stub, '{"$ref": "#"}')


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ("#/type/x", "does not resolve"),  # an index into a string
        ("#/required/abc", "does not resolve"),  # a name as a list index
        ("#/required", "not a schema"),
        ("#/required/0", "not a schema"),
        ("#/properties/city/type", "not a schema"),
        ("#/minLength", "not a schema"),
    ],
)
async def test_a_ref_into_a_value_that_is_no_schema_is_refused(stub, ref, why):
    schema = {**json.loads(GOOD), "minLength": 1, "allOf": [{"$ref": ref}]}
    assert why in await refused(stub, json.dumps(schema))


async def test_a_pattern_that_backtracks_without_bound_is_refused_and_the_server_answers(stub):
    schema = json.dumps(
        {"type": "object", "properties": {"city": {"type": "string", "pattern": "^(a|aa)+$"}}}
    )
    assert "took too long" in await refused(stub, schema, text='{"city": "' + "a" * 60 + 'b"}')


async def test_an_answer_nested_past_the_parser_is_invalid_not_an_error(stub):
    reply = await stub.ValidateStructuredOutput(
        pb.ValidateStructuredOutputRequest(context=CTX, text="[" * 100_000 + "]" * 100_000, json_schema=GOOD),
        timeout=10,
    )
    assert not reply.valid and reply.errors == ["the response is nested too deeply"]


async def test_the_limits_come_from_the_settings():
    async with served(
        GuardrailsSettings(guardrails_max_schema_bytes=200, guardrails_max_schema_depth=8)
    ) as stub:
        assert "at most 200 are accepted" in await refused(
            stub, json.dumps({"description": "x" * 200, **json.loads(GOOD)})
        )
        assert "nested more than 8 levels deep" in await refused(stub, nested(4))


async def test_schemas_are_compiled_and_checked_off_the_event_loop(monkeypatch):
    from guardrails_service import structured

    threads: list[str] = []
    real = structured.check

    def spy(*args):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(structured, "check", spy)
    result = await structured.check_off_loop(GOOD, '{"city": "Oslo"}')
    assert result.valid
    assert len(threads) == 1 and threads[0].startswith("json-schema")
