"""Collections through the gateway on a real retrieval service: who may drop or overwrite them, and
that every collection and embeddings request counts against rate limits, budgets and usage."""

import asyncio
import secrets

from gateway_service.pipeline.clients import BackendTargets

from services.gateway.tests.retrieval_backend import retrieval_backend  # noqa: F401 - fixture

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


async def _gateway(
    start_gateway,
    backend_addresses,
    retrieval_backend,  # noqa: F811
    postgres_dsn,
    **settings,
):
    targets = BackendTargets(backend_addresses.guardrails, retrieval_backend, backend_addresses.generation)
    return await start_gateway(targets=targets, gateway_database_url=postgres_dsn, **settings)


async def _key(http, **body) -> str:
    made = await http.post("/v1/admin/keys", json=body)
    assert made.status_code == 201, made.text
    return made.json()["key"]


async def test_members_may_read_and_create_but_not_drop_or_overwrite(
    start_gateway,
    backend_addresses,
    retrieval_backend,  # noqa: F811
    postgres_dsn,
):
    gw = await _gateway(start_gateway, backend_addresses, retrieval_backend, postgres_dsn)
    org = "coll-" + secrets.token_hex(4)
    async with gw.client() as root:
        assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        admin = await _key(root, org_id=org, role="admin")
        member = await _key(root, org_id=org, role="member")
        ingester = await _key(root, org_id=org, role="member", settings={"scopes": ["retrieval:admin"]})
    doc = {"id": "leave", "text": "Employees get 25 days of paid leave a year."}

    async with gw.client(api_key=admin) as http:
        assert (await http.post("/v1/collections", json={"name": "handbook"})).status_code == 201
        added = await http.post("/v1/collections/handbook/documents", json={"documents": [doc]})
        assert added.status_code == 200 and added.json()["documents"] == 1

    async with gw.client(api_key=member) as http:
        assert (await http.get("/v1/collections")).status_code == 200
        found = await http.post("/v1/collections/handbook/search", json={"query": "paid leave"})
        assert found.status_code == 200 and found.json()["data"]
        assert (await http.post("/v1/collections", json={"name": "notes"})).status_code == 201
        replaced = {"id": "leave", "text": "Employees get no leave."}
        attempts = [
            await http.post("/v1/collections/handbook/documents", json={"documents": [replaced]}),
            await http.delete("/v1/collections/handbook/documents/leave"),
            await http.post("/v1/collections/handbook/documents/delete", json={"ids": ["leave"]}),
            await http.delete("/v1/collections/handbook"),
        ]
        for refused in attempts:
            assert refused.status_code == 403, refused.text
            error = refused.json()["error"]
            assert error["code"] == "insufficient_scope" and "retrieval:admin" in error["message"]
        listed = {c["name"]: c for c in (await http.get("/v1/collections")).json()["data"]}
        assert listed["handbook"]["documents"] == 1
        kept = await http.post("/v1/collections/handbook/search", json={"query": "paid leave"})
        assert "25 days" in kept.json()["data"][0]["text"]

    async with gw.client(api_key=ingester) as http:
        again = await http.post("/v1/collections/handbook/documents", json={"documents": [doc]})
        assert again.status_code == 200
        assert (await http.delete("/v1/collections/handbook")).status_code == 200


async def test_collections_and_embeddings_count_against_limits_and_usage(
    start_gateway,
    backend_addresses,
    retrieval_backend,  # noqa: F811
    postgres_dsn,
):
    gw = await _gateway(
        start_gateway,
        backend_addresses,
        retrieval_backend,
        postgres_dsn,
        gateway_usage_flush_seconds=0.1,
        # One dollar per embedded token.
        gateway_prices={EMBEDDING_MODEL: {"prompt_per_1m": 1_000_000, "completion_per_1m": 0}},
    )
    org = "meter-" + secrets.token_hex(4)
    async with gw.client() as root:
        assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        key = await _key(root, org_id=org, role="admin", settings={"rpm": 3})
    async with gw.client(api_key=key) as http:
        embedded = await http.post("/v1/embeddings", json={"model": EMBEDDING_MODEL, "input": "paid leave"})
        assert embedded.status_code == 200, embedded.text
        tokens = embedded.json()["usage"]["prompt_tokens"]
        assert tokens > 0 and embedded.headers["ratelimit-remaining"] == "2"
        assert (await http.get("/v1/collections")).status_code == 200
        assert (await http.post("/v1/collections", json={"name": "metered"})).status_code == 201
        refused = await http.get("/v1/collections")
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "key_rpm" and int(refused.headers["retry-after"]) >= 1

        rows: list = []
        for _ in range(100):
            usage = (await http.get("/v1/usage")).json()
            rows = usage["data"]
            if sum(r["requests"] for r in rows) == 3:
                break
            await asyncio.sleep(0.05)
    by_route = {r["route"]: r for r in rows}
    assert by_route["/v1/embeddings"]["model"] == EMBEDDING_MODEL
    assert by_route["/v1/embeddings"]["requests"] == 1
    assert by_route["/v1/embeddings"]["prompt_tokens"] == tokens
    assert by_route["/v1/embeddings"]["cost_usd"] == tokens
    assert by_route["/v1/collections"]["requests"] == 2
    assert usage["spend_this_month_usd"]["key"] == tokens
