"""Internal teams call retrieval over gRPC with tokens exchanged at the gateway, and reach only
their own collections, over gRPC and over HTTP alike.

Two teams share an organization, each key limited to its collection-name prefix; a third key
belongs to another organization. Everything runs against the suite's real processes.
"""

import asyncio
import secrets

import grpc
import httpx
import pytest
from llmsuite.retrieval.v1 import retrieval_pb2
from retrieval_service.client import RetrievalClient, Source
from retrieval_service.credentials import GatewayTokens, TokenExchangeError

from tests.conftest import Suite

DENIED = grpc.StatusCode.PERMISSION_DENIED


def _admin(suite: Suite) -> httpx.Client:
    return httpx.Client(
        base_url=suite.gateway_url,
        headers={"authorization": f"Bearer {suite.api_key}"},
        timeout=30,
        trust_env=False,
    )


def _key(http: httpx.Client, org: str, **settings: object) -> str:
    reply = http.post("/v1/admin/keys", json={"org_id": org, "role": "member", "settings": settings})
    assert reply.status_code == 201, reply.text
    return reply.json()["key"]


@pytest.fixture(scope="module")
def teams(suite: Suite) -> dict[str, str]:
    org, other = "teams-" + secrets.token_hex(3), "other-" + secrets.token_hex(3)
    with _admin(suite) as http:
        for name in (org, other):
            assert http.post("/v1/admin/orgs", json={"id": name}).status_code == 201
        return {
            "org": org,
            "a": _key(http, org, scopes=["retrieval:admin"], collection_prefixes=["a-"]),
            "b": _key(http, org, scopes=["retrieval:admin"], collection_prefixes=["b-"]),
            "reader": _key(http, org, scopes=["retrieval:read"]),
            "other": _key(http, other, scopes=["retrieval:admin"]),
        }


def _client(suite: Suite, key: str, **kwargs: object) -> RetrievalClient:
    target = f"127.0.0.1:{suite.cfg.ports.retrieval}"
    return RetrievalClient(target, credentials=GatewayTokens(suite.gateway_url, key, **kwargs), timeout=60)


async def _seed(suite: Suite, key: str, collection: str, text: str) -> str:
    async with _client(suite, key) as rc:
        await rc.create_collection(collection)
        [progress] = [p async for p in rc.ingest(collection, [Source(id="doc", text=text)])]
        assert progress.status == retrieval_pb2.IngestProgress.INDEXED, progress.error.message
        found = await rc.search(collection, text, k=1)
    return found.chunks[0].chunk_id


async def _denied(call: object, code: grpc.StatusCode = DENIED) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        result = call
        if hasattr(result, "__aiter__"):
            [p async for p in result]  # type: ignore[attr-defined]
        else:
            await result  # type: ignore[misc]
    assert info.value.code() == code, info.value.details()


def test_token_exchange_names_the_keys_org_scopes_and_prefixes(suite: Suite, teams):
    reply = httpx.post(
        f"{suite.gateway_url}/v1/auth/token",
        json={"audience": "retrieval"},
        headers={"authorization": f"Bearer {teams['a']}"},
        timeout=10,
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 300
    assert body["organization"] == teams["org"] and body["collection_prefixes"] == ["a-"]
    assert body["scope"] == "retrieval:admin retrieval:read retrieval:write"
    assert reply.headers["cache-control"] == "no-store"

    # Asking for more than the key holds, or for another service, is refused.
    wider = httpx.post(
        f"{suite.gateway_url}/v1/auth/token",
        json={"scope": "retrieval:admin"},
        headers={"authorization": f"Bearer {teams['reader']}"},
        timeout=10,
    )
    assert wider.status_code == 403 and wider.json()["error"]["code"] == "scope_exceeded"
    elsewhere = httpx.post(
        f"{suite.gateway_url}/v1/auth/token",
        json={"audience": "generation"},
        headers={"authorization": f"Bearer {teams['a']}"},
        timeout=10,
    )
    assert elsewhere.status_code == 400


async def test_team_a_cannot_reach_team_b_over_grpc(suite: Suite, teams):
    chunk_b = await _seed(suite, teams["b"], "b-notes", "Team B keeps its deploy calendar here.")
    await _seed(suite, teams["a"], "a-notes", "Team A keeps its on-call rota here.")

    async with _client(suite, teams["a"]) as rc:
        assert {c.name for c in await rc.list_collections()} == {"a-notes"}
        await _denied(rc.search("b-notes", "deploy calendar"))
        await _denied(rc.ingest("b-notes", [Source(id="evil", text="overwrite")]))
        await _denied(rc.ingest_texts("b-notes", {"evil": "overwrite"}))
        await _denied(rc.create_collection("b-new"))
        await _denied(rc.delete_documents("b-notes", ["doc"]))
        await _denied(rc.delete_collection("b-notes"))
        await _denied(rc.get_chunk(chunk_b), grpc.StatusCode.NOT_FOUND)

    # Another organization's admin sees none of it and cannot remove it.
    async with _client(suite, teams["other"]) as rc:
        assert "b-notes" not in {c.name for c in await rc.list_collections()}
        await _denied(rc.delete_collection("b-notes"), grpc.StatusCode.NOT_FOUND)
        await _denied(rc.get_chunk(chunk_b), grpc.StatusCode.NOT_FOUND)

    # Team B's collection is whole.
    async with _client(suite, teams["b"]) as rc:
        found = await rc.search("b-notes", "deploy calendar", k=1)
        assert [c.chunk_id for c in found.chunks] == [chunk_b]


async def test_a_read_scope_searches_but_never_writes(suite: Suite, teams):
    await _seed(suite, teams["a"], "a-shared", "The shared glossary defines SLO and SLA.")
    async with _client(suite, teams["reader"]) as rc:
        assert (await rc.search("a-shared", "glossary", k=1)).chunks
        await _denied(rc.ingest_texts("a-shared", {"x": "y"}))
        await _denied(rc.delete_collection("a-shared"))
    # The same key narrowed at exchange: a token for less than the key holds.
    async with _client(suite, teams["a"], scope="retrieval:read") as rc:
        assert (await rc.search("a-shared", "glossary", k=1)).chunks
        await _denied(rc.ingest_texts("a-shared", {"x": "y"}))


def test_team_a_cannot_reach_team_b_over_http(suite: Suite, teams):
    asyncio.run(_seed(suite, teams["b"], "b-http", "Team B's HTTP-only runbook."))
    with httpx.Client(
        base_url=suite.gateway_url,
        headers={"authorization": f"Bearer {teams['a']}"},
        timeout=30,
        trust_env=False,
    ) as http:
        listed = http.get("/v1/collections")
        assert listed.status_code == 200 and "b-http" not in {c["name"] for c in listed.json()["data"]}
        for method, path, body in (
            ("POST", "/v1/collections/b-http/search", {"query": "runbook"}),
            ("POST", "/v1/collections/b-http/documents", {"documents": [{"id": "x", "text": "y"}]}),
            ("POST", "/v1/collections/b-http/documents/delete", {"ids": ["doc"]}),
            ("DELETE", "/v1/collections/b-http", None),
        ):
            reply = http.request(method, path, json=body)
            assert reply.status_code == 403, (path, reply.text)
            assert reply.json()["error"]["type"] == "invalid_request_error"


async def test_gateway_tokens_refresh_before_expiry(suite: Suite, teams):
    now = [1000.0]
    tokens = GatewayTokens(suite.gateway_url, teams["a"], clock=lambda: now[0])
    await tokens.ready()
    await tokens.ready()
    assert tokens.exchanges == 1
    now[0] += 250  # within a minute of the 300 s lifetime
    await tokens.ready()
    assert tokens.exchanges == 2
    now[0] += 250  # calls that find it stale together wait for one exchange
    await asyncio.gather(*(tokens.ready() for _ in range(5)))
    assert tokens.exchanges == 3
    with pytest.raises(TokenExchangeError, match="401"):
        await GatewayTokens(suite.gateway_url, "llms_000000000000_" + "x" * 43).ready()
