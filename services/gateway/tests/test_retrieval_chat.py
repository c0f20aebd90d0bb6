"""Chat with the retrieval extension against the real retrieval service (embedded PostgreSQL +
MiniLM): context goes to the model as a numbered system message, citations come back."""

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import grpc
import pytest
from gateway_service.pipeline.clients import BackendTargets
from gateway_service.pipeline.prompt import CONTEXT_INSTRUCTION, NO_CONTEXT
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from prometheus_client import CollectorRegistry
from retrieval_service.app import RetrievalApp
from retrieval_service.settings import RetrievalSettings

from tests.service_auth import AUTHORITY

COLLECTION = "handbook"
ORG = "default"
DOCS = {
    "pgvector.md": "pgvector adds a vector column type and nearest-neighbour search to PostgreSQL.",
    "kitchen.md": "The office kitchen closes at six; the coffee machine descales on Fridays.",
}


@pytest.fixture(scope="module")
async def retrieval_target() -> AsyncIterator[str]:
    # Short and under /tmp: PostgreSQL's socket path must fit in 107 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="gwr-", dir="/tmp"))
    settings = RetrievalSettings(
        retrieval_database_url="",
        retrieval_pgserver_data_dir=str(scratch / "pg"),
        retrieval_model_cache_dir=str(scratch / "models"),
    )
    # Its own registry: several apps live in one test process.
    app = RetrievalApp(settings, registry=CollectorRegistry())
    async with AsyncExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        server = grpc.aio.server(interceptors=AUTHORITY.interceptors(app.audience))
        app.add_to_server(server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stack.push_async_callback(server.stop, None)
        await app.start()
        stack.push_async_callback(app.stop)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await retrieval_pb2_grpc.RetrievalServiceStub(channel).Ingest(
                retrieval_pb2.IngestRequest(
                    context=common_pb2.RequestContext(org_id=ORG),
                    collection=COLLECTION,
                    documents=[retrieval_pb2.Document(id=k, text=v) for k, v in DOCS.items()],
                ),
                timeout=120,
                metadata=AUTHORITY.metadata("retrieval", ORG),
            )
        yield f"dns:///127.0.0.1:{port}"


@pytest.fixture
async def rag_gateway(start_gateway, backend_addresses, retrieval_target):
    b = backend_addresses
    return await start_gateway(
        BackendTargets(b.guardrails, retrieval_target, b.generation), gateway_org_id=ORG
    )


async def test_retrieved_chunks_reach_the_model_and_come_back_as_citations(rag_gateway, fake):
    client = rag_gateway.openai()
    reply = await client.chat.completions.create(
        model=rag_gateway.model,
        messages=[{"role": "user", "content": "Which extension gives PostgreSQL vector search?"}],
        extra_body={"retrieval": {"collection": COLLECTION, "k": 1}},
    )
    citations = reply.model_extra["citations"]
    assert [c["source_id"] for c in citations] == ["pgvector.md"]
    assert citations[0]["chunk_id"] and -1 <= citations[0]["score"] <= 1

    system = fake.requests()[-1]["body"]["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(CONTEXT_INSTRUCTION)
    assert f"[1] (source: pgvector.md) {DOCS['pgvector.md']}" in system["content"]
    assert "kitchen" not in system["content"]


async def test_streamed_answer_carries_citations_in_the_first_chunk(rag_gateway, fake):
    stream = await rag_gateway.openai().chat.completions.create(
        model=rag_gateway.model,
        messages=[{"role": "user", "content": "When does the kitchen close?"}],
        stream=True,
        extra_body={"retrieval": {"collection": COLLECTION, "k": 2}},
    )
    chunks = [c async for c in stream]
    first = chunks[0].model_extra["citations"]
    assert [c["source_id"] for c in first][0] == "kitchen.md"
    assert all("citations" not in (c.model_extra or {}) for c in chunks[1:])


async def test_other_tenants_collection_is_not_visible(
    start_gateway, backend_addresses, retrieval_target, fake
):
    b = backend_addresses
    gateway = await start_gateway(
        BackendTargets(b.guardrails, retrieval_target, b.generation), gateway_org_id="someone-else"
    )
    async with gateway.client() as c:
        response = await c.post(
            "/v1/chat/completions",
            json={
                "model": gateway.model,
                "messages": [{"role": "user", "content": "Which extension gives PostgreSQL vector search?"}],
                "retrieval": {"collection": COLLECTION},
            },
        )
    assert response.status_code == 200
    assert response.json()["citations"] == []
    system = fake.requests()[-1]["body"]["messages"][0]
    assert system["content"].endswith(NO_CONTEXT)
    assert "pgvector adds" not in system["content"]


async def _logged(http, request_id: str) -> dict:
    """The request-log row of `request_id`; a stream's is queued once it has closed."""
    for _ in range(50):
        got = await http.get(f"/v1/requests/{request_id}")
        if got.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert got.status_code == 200, got.text
    return got.json()


async def test_the_request_log_keeps_what_an_answer_cited(
    start_gateway, backend_addresses, retrieval_target, postgres_dsn, fake
):
    b = backend_addresses
    gateway = await start_gateway(
        BackendTargets(b.guardrails, retrieval_target, b.generation),
        gateway_org_id=ORG,
        gateway_database_url=postgres_dsn,
    )
    question = {"role": "user", "content": "Which extension gives PostgreSQL vector search?"}
    retrieval = {"collection": COLLECTION, "k": 1}
    body = {"model": gateway.model, "messages": [question], "retrieval": retrieval, "cache": False}
    async with gateway.client() as http:
        whole = await http.post("/v1/chat/completions", json=body)
        assert whole.status_code == 200, whole.text
        async with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as streamed:
            lines = [line async for line in streamed.aiter_lines()]
        plain = await http.post("/v1/chat/completions", json={**body, "retrieval": None})
        rows = [await _logged(http, r.headers["x-request-id"]) for r in (whole, streamed, plain)]
    cited = whole.json()["citations"]
    assert [c["source_id"] for c in cited] == ["pgvector.md"]
    assert any('"citations"' in line for line in lines)
    # Both answers' rows keep the ids and scores they cited, never the chunk's text.
    assert rows[0]["citations"] == cited and rows[1]["citations"] == cited
    assert rows[1]["stream"] is True
    assert DOCS["pgvector.md"] not in str(rows[0]["citations"])
    # Without the extension there is nothing cited.
    assert rows[2]["citations"] is None
