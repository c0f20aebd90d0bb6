"""Unknown keys are refused from memory once seen; failed authentications count per client IP."""

import secrets

from gateway_service.db import Database
from gateway_service.edge import keys as keys_module
from gateway_service.edge.auth import Identity
from gateway_service.edge.auth_failures import AuthFailures
from gateway_service.edge.keys import KeyStore, new_key
from gateway_service.edge.ratelimit import MemoryLimitStore
from gateway_service.settings import GatewaySettings
from llmsuite_common.clock import ManualClock

CHAT = "/v1/chat/completions"


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]}


async def _store(postgres_dsn: str, clock: ManualClock) -> tuple[KeyStore, Database]:
    database = Database(GatewaySettings(gateway_api_key="k", gateway_database_url=postgres_dsn))
    await database.open()
    return KeyStore(database, cache_ttl_seconds=5, unknown_ttl_seconds=30, clock=clock), database


async def test_an_unknown_key_reaches_the_database_once_per_ttl(postgres_dsn):
    clock = ManualClock()
    store, database = await _store(postgres_dsn, clock)
    try:
        _, unknown = new_key()
        assert await store.authenticate(unknown) is None
        assert await store.authenticate(unknown) is None
        assert store.database_lookups == 1
        clock.advance(31)
        assert await store.authenticate(unknown) is None
        assert store.database_lookups == 2
    finally:
        await database.close()


async def test_made_up_keys_do_not_push_real_keys_out_of_the_cache(postgres_dsn, monkeypatch):
    clock = ManualClock()
    store, database = await _store(postgres_dsn, clock)
    monkeypatch.setattr(keys_module, "_CACHE_MAX", 4)
    org = "unknown-" + secrets.token_hex(4)
    root = Identity(org_id=org, key_id="root", superuser=True)
    try:
        await store.ensure_org(org)
        made = await store.create_key(root, org_id=org, role="member", name="", user_id=None, settings={})
        real = made["key"]
        assert await store.authenticate(real) is not None
        for _ in range(10):
            assert await store.authenticate(new_key()[1]) is None
        lookups = store.database_lookups
        assert await store.authenticate(real) is not None
        assert store.database_lookups == lookups  # still cached
    finally:
        await database.close()


async def test_creating_a_key_clears_its_unknown_entry_at_once(postgres_dsn, monkeypatch):
    clock = ManualClock()
    store, database = await _store(postgres_dsn, clock)
    org = "unknown-" + secrets.token_hex(4)
    root = Identity(org_id=org, key_id="root", superuser=True)
    key_id, key = new_key()
    try:
        await store.ensure_org(org)
        assert await store.authenticate(key) is None  # this id is now remembered as unknown
        monkeypatch.setattr(keys_module, "new_key", lambda: (key_id, key))
        await store.create_key(root, org_id=org, role="member", name="", user_id=None, settings={})
        identity = await store.authenticate(key)
        assert identity is not None and identity.key_id == key_id
    finally:
        await database.close()


async def test_failures_per_address_refuse_with_retry_after_until_the_window_passes():
    clock = ManualClock()
    guard = AuthFailures(MemoryLimitStore(clock=clock), limit=2, window_seconds=60, clock=clock)
    assert await guard.failed("10.0.0.1") is None
    assert await guard.failed("10.0.0.1") is None
    third = await guard.failed("10.0.0.1")
    assert third is not None and third.status == 429 and third.code == "auth_failures"
    assert third.retry_after == 60
    assert guard.refusal("10.0.0.2") is None  # another address is not affected
    clock.advance(30)
    later = guard.refusal("10.0.0.1")
    assert later is not None and later.retry_after == 30
    clock.advance(30.5)
    assert guard.refusal("10.0.0.1") is None


async def test_a_key_guessing_client_gets_429_and_known_keys_still_pass(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn, gateway_ip_auth_failures=3)
    async with gw.client() as root:
        # The bootstrap key authenticated before: it keeps working from this address throughout.
        assert (await root.get("/v1/models")).status_code == 200
        statuses = []
        for _ in range(5):
            async with gw.client(api_key=new_key()[1]) as guesser:
                response = await guesser.post(CHAT, json=chat(gw.model))
                statuses.append(response.status_code)
        assert statuses == [401, 401, 401, 429, 429]
        assert response.json()["error"]["code"] == "auth_failures"
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert int(response.headers["retry-after"]) >= 1
        assert (await root.get("/v1/models")).status_code == 200
        metrics = (await root.get("/metrics")).text
    assert 'llmsuite_gateway_rate_limited_total{cause="auth_failures"} 2.0' in metrics
