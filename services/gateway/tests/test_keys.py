"""API keys and organizations in a real PostgreSQL, through the admin API and the chat route."""

import asyncio
import secrets

import pytest
from gateway_service.db import migrate, migrations
from gateway_service.edge.keys import parse_key_id
from llmsuite_common.clock import ManualClock
from psycopg_pool import AsyncConnectionPool

CHAT = "/v1/chat/completions"


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello there"}], **extra}


@pytest.fixture
def org() -> str:
    return "org-" + secrets.token_hex(4)


@pytest.fixture
def clock() -> ManualClock:
    """The gateway's clock: its key cache expires when the test moves it."""
    return ManualClock()


@pytest.fixture
async def keyed(start_gateway, postgres_dsn, clock):
    return await start_gateway(
        gateway_database_url=postgres_dsn, gateway_key_cache_ttl_seconds=0.3, clock=clock
    )


async def _create_key(http, **body) -> dict:
    response = await http.post("/v1/admin/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_migrations_are_versioned_and_applied_once(postgres_dsn):
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1, open=False) as pool:
        await migrate(pool)
        assert await migrate(pool) == []
        async with pool.connection() as conn:
            rows = await (
                await conn.execute("SELECT version FROM gateway.schema_migrations ORDER BY 1")
            ).fetchall()
    assert [r[0] for r in rows] == [v for v, _ in migrations()]


async def test_key_lifecycle_and_roles(keyed, org):
    async with keyed.client() as root:
        assert (
            await root.post("/v1/admin/orgs", json={"id": org, "settings": {"rpm": 100}})
        ).status_code == 201
        assert (await root.post("/v1/admin/orgs", json={"id": org})).status_code == 409
        admin = await _create_key(root, org_id=org, role="admin", name="ops", settings={"rpm": 50})
    key = admin["key"]
    assert key.startswith("llms_") and parse_key_id(key) == admin["id"]

    async with keyed.client(api_key=key) as http:
        assert (await http.post(CHAT, json=chat(keyed.model))).status_code == 200
        member = await _create_key(http, role="member", user_id="alice")
        assert member["org_id"] == org and member["settings"]["rpm"] == 50  # inherited, never wider
        wider = await http.post("/v1/admin/keys", json={"settings": {"rpm": 51}})
        assert wider.status_code == 403 and wider.json()["error"]["code"] == "scope_exceeded"
        elsewhere = await http.post("/v1/admin/keys", json={"org_id": "default"})
        assert elsewhere.status_code == 404
        listed = (await http.get("/v1/admin/keys")).json()["data"]
        assert {k["id"] for k in listed} == {admin["id"], member["id"]}
        # Shown once: no list ever carries the key or its hash.
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert member["key"] not in str(listed)
        assert [o["id"] for o in (await http.get("/v1/admin/orgs")).json()["data"]] == [org]

    async with keyed.client(api_key=member["key"]) as http:
        assert (await http.post(CHAT, json=chat(keyed.model))).status_code == 200
        assert (await http.get("/v1/admin/keys")).status_code == 403
        assert (await http.post("/v1/admin/keys", json={})).status_code == 403


async def test_revoked_key_stops_working_within_the_cache_ttl(keyed, org, clock):
    async with keyed.client() as root:
        await root.post("/v1/admin/orgs", json={"id": org})
        created = await _create_key(root, org_id=org)
    async with keyed.client(api_key=created["key"]) as http:
        assert (await http.post(CHAT, json=chat(keyed.model))).status_code == 200
    async with keyed.client() as root:
        revoked = await root.delete(f"/v1/admin/keys/{created['id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    async with keyed.client(api_key=created["key"]) as http:
        # This replica forgets at once; others within GATEWAY_KEY_CACHE_TTL_SECONDS (0.3 s here).
        clock.advance(0.35)
        response = await http.post(CHAT, json=chat(keyed.model))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_wrong_secret_for_a_real_key_id_is_rejected(keyed, org):
    async with keyed.client() as root:
        await root.post("/v1/admin/orgs", json={"id": org})
        created = await _create_key(root, org_id=org)
    forged = created["key"][:-4] + ("AAAA" if not created["key"].endswith("AAAA") else "BBBB")
    async with keyed.client(api_key=forged) as http:
        assert (await http.post(CHAT, json=chat(keyed.model))).status_code == 401
    async with keyed.client(api_key="llms_' OR 1=1 --") as http:
        assert (await http.post(CHAT, json=chat(keyed.model))).status_code == 401


async def test_allowed_models_and_max_tokens_caps(keyed, org):
    async with keyed.client() as root:
        await root.post("/v1/admin/orgs", json={"id": org, "settings": {"max_tokens": 10}})
        created = await _create_key(root, org_id=org, settings={"allowed_models": ["other-model"]})
        capped = await _create_key(root, org_id=org)
    async with keyed.client(api_key=created["key"]) as http:
        refused = await http.post(CHAT, json=chat(keyed.model))
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "model_not_allowed"
    async with keyed.client(api_key=capped["key"]) as http:
        too_many = await http.post(CHAT, json=chat(keyed.model, max_tokens=11))
        assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "max_tokens_too_large"
        assert (await http.post(CHAT, json=chat(keyed.model, max_tokens=10))).status_code == 200


async def test_two_tenants_never_share_a_cache_entry(keyed, fake):
    orgs = ["cache-a-" + secrets.token_hex(3), "cache-b-" + secrets.token_hex(3)]
    keys = []
    async with keyed.client() as root:
        for org in orgs:
            await root.post("/v1/admin/orgs", json={"id": org})
            keys.append((await _create_key(root, org_id=org))["key"])
    body = chat(keyed.model, temperature=0)
    results = []
    for key in keys:
        async with keyed.client(api_key=key) as http:
            results.append([await http.post(CHAT, json=body) for _ in range(2)])
    (a1, a2), (b1, b2) = results
    assert [r.headers["x-cache"] for r in (a1, a2, b1, b2)] == ["miss", "hit", "miss", "hit"]
    assert a2.content == a1.content and b1.content != a1.content
    assert len(fake.requests()) == 2


async def test_admin_api_needs_a_database(gateway):
    async with gateway.client() as http:
        response = await http.get("/v1/admin/keys")
    assert response.status_code == 501


async def test_cli_creates_lists_and_revokes_keys(keyed, org, monkeypatch, capsys):
    from gateway_service import cli

    monkeypatch.setenv("LLMSUITE_URL", keyed.url)
    monkeypatch.setenv("LLMSUITE_API_KEY", keyed.api_key)

    def run(*argv: str) -> dict:
        code = cli.main(list(argv))
        out = capsys.readouterr()
        assert code == 0, out.err
        return __import__("json").loads(out.out)

    # The CLI blocks; run it off the event loop that serves the gateway.
    assert (await asyncio.to_thread(run, "orgs", "create", org, "--rpm", "10"))["id"] == org
    created = await asyncio.to_thread(run, "keys", "create", "--org", org, "--user", "bob", "--tpm", "500")
    assert created["key"].startswith("llms_") and created["settings"] == {"tpm": 500}
    listed = await asyncio.to_thread(run, "keys", "list", "--org", org)
    assert [k["id"] for k in listed["data"]] == [created["id"]]
    assert (await asyncio.to_thread(run, "keys", "revoke", created["id"]))["revoked_at"]


async def test_authentication_is_cached_and_a_revocation_elsewhere_lands_within_the_ttl(
    start_gateway, postgres_dsn, org, clock
):
    gw = await start_gateway(
        gateway_database_url=postgres_dsn, gateway_key_cache_ttl_seconds=1.0, clock=clock
    )
    async with gw.client() as root:
        await root.post("/v1/admin/orgs", json={"id": org})
        created = await _create_key(root, org_id=org)
    async with gw.client(api_key=created["key"]) as http:
        assert (await http.post(CHAT, json=chat(gw.model))).status_code == 200
        # Revoked behind this replica's back (as another replica would): the cached lookup still
        # answers, which shows requests are not reading the database each time...
        async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=1, open=False) as pool:
            async with pool.connection() as conn:
                await conn.execute(
                    "UPDATE gateway.api_keys SET revoked_at = now() WHERE id = %s", (created["id"],)
                )
        clock.advance(0.95)  # still within the TTL
        assert (await http.post(CHAT, json=chat(gw.model))).status_code == 200
        # ...and once the entry expires the revocation holds.
        clock.advance(0.1)
        assert (await http.post(CHAT, json=chat(gw.model))).status_code == 401


async def test_admin_api_can_be_kept_off_a_listener(start_gateway):
    gw = await start_gateway(gateway_admin_api_enabled=False)
    async with gw.client() as http:
        assert (await http.get("/v1/admin/keys")).status_code == 404
