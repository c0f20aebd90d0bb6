"""The OpenAPI document describes the errors the gateway sends: the OpenAI error envelope (Anthropic's
on /v1/messages) for every 4XX and 5XX status, and no 422 HTTPValidationError (validation fails with
400)."""

import jsonschema
from gateway_service.app import create_app
from gateway_service.pipeline.clients import BackendClients, BackendTargets
from gateway_service.settings import GatewaySettings


def _document() -> dict:
    settings = GatewaySettings(gateway_api_key="k", gateway_redis_url="", gateway_cache_redis_url="")
    unused = "dns:///127.0.0.1:9"
    clients = BackendClients(BackendTargets(unused, unused, unused), max_message_bytes=1 << 20)
    return create_app(settings, clients).openapi()


def test_every_operation_documents_the_error_envelope():
    document = _document()
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    operations = [(path, op) for path, ops in document["paths"].items() for op in ops.values()]
    assert operations
    for path, operation in operations:
        assert "422" not in operation["responses"], operation["operationId"]
        envelope = "AnthropicErrorResponse" if path == "/v1/messages" else "ErrorResponse"
        for statuses in ("4XX", "5XX"):
            error = operation["responses"][statuses]["content"]["application/json"]["schema"]
            assert error == {"$ref": f"#/components/schemas/{envelope}"}, operation["operationId"]
    # Built once: the same document every time.
    assert _document() == document


async def test_the_errors_sent_match_the_documented_envelope(gateway):
    async with gateway.client(api_key=None) as anonymous, gateway.client() as c:
        document = (await anonymous.get("/openapi.json")).json()
        answers = [
            await anonymous.get("/v1/models"),  # 401
            await c.post("/v1/chat/completions", json={"messages": []}),  # 400 validation
            await c.post("/v1/chat/completions", content=b"{", headers={"content-type": "application/json"}),
            await c.get("/v1/nowhere"),  # 404
            await c.put("/v1/models"),  # 405
        ]
    schema = document["components"]["schemas"]["ErrorResponse"]
    for answer in answers:
        assert answer.status_code >= 400 and answer.headers["content-type"] == "application/json"
        jsonschema.validate(answer.json(), schema)
    assert [a.status_code for a in answers] == [401, 400, 400, 404, 405]


async def test_the_messages_routes_errors_match_the_documented_anthropic_envelope(gateway):
    async with gateway.client(api_key=None) as anonymous, gateway.client() as c:
        document = (await anonymous.get("/openapi.json")).json()
        answers = [
            await anonymous.post("/v1/messages", json={}),  # 401
            await c.post("/v1/messages", json={"messages": []}),  # 400 validation
            await c.get("/v1/messages"),  # 405
        ]
    schema = document["components"]["schemas"]["AnthropicErrorResponse"]
    for answer in answers:
        jsonschema.validate(answer.json(), schema)
    assert [a.status_code for a in answers] == [401, 400, 405]
