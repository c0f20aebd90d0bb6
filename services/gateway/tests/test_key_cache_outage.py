"""A key the gateway holds in its cache keeps working while the database cannot answer: its
expired entry is used again (for at most STALE_IF_ERROR_SECONDS past its expiry) after one short
lookup, and looked up at most once a second meanwhile; once the database answers, the key is
what the database says (a revoked key is refused)."""

import secrets
import socket
import time
from dataclasses import dataclass

import pytest
from gateway_service.db import migrate
from gateway_service.edge.auth import Identity
from gateway_service.edge.keys import (
    STALE_IF_ERROR_SECONDS,
    STALE_LOOKUP_WAIT_SECONDS,
    STALE_RETRY_SECONDS,
    KeyStore,
)
from llmsuite_common.clock import ManualClock
from psycopg_pool import AsyncConnectionPool, PoolTimeout

TTL = 5.0


@dataclass
class PoolSource:
    pool: AsyncConnectionPool


def unreachable_dsn() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens there once the socket is closed: every connection attempt is refused.
    return f"host=127.0.0.1 port={port} dbname=x user=x connect_timeout=1"


async def test_a_cached_key_works_while_the_database_is_down(postgres_dsn):
    clock = ManualClock()
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as live:
        await migrate(live)
        source = PoolSource(live)
        store = KeyStore(source, cache_ttl_seconds=TTL, clock=clock)
        root = Identity(org_id="root", key_id="", superuser=True)
        org = "org-" + secrets.token_hex(4)
        await store.create_org(root, org, org, {})
        created = await store.create_key(root, org_id=org, role="member", name="k", user_id=None, settings={})
        key = created["key"]
        assert (await store.authenticate(key)).key_id == created["id"]

        async with AsyncConnectionPool(
            unreachable_dsn(), min_size=0, max_size=1, timeout=1, open=False
        ) as down:
            await down.open(wait=False)
            source.pool = down
            clock.advance(TTL + 1)
            lookups = store.database_lookups
            started = time.monotonic()
            served = await store.authenticate(key)
            assert served is not None and served.key_id == created["id"]
            assert time.monotonic() - started < STALE_LOOKUP_WAIT_SECONDS + 1.0
            assert store.database_lookups == lookups + 1

            # Within the retry interval: the cached entry, no lookup at all.
            clock.advance(STALE_RETRY_SECONDS / 2)
            assert await store.authenticate(key) is not None
            assert store.database_lookups == lookups + 1
            # After it: one more short lookup, and the entry again.
            clock.advance(STALE_RETRY_SECONDS)
            assert await store.authenticate(key) is not None
            assert store.database_lookups == lookups + 2
            # A wrong secret for the same key id is refused from the stale entry too.
            assert await store.authenticate(key[:-4] + "AAAA") is None

            # Past the bound the entry is not used: the caller gets the database's failure (503).
            clock.advance(TTL + STALE_IF_ERROR_SECONDS)
            with pytest.raises(PoolTimeout):
                await store.authenticate(key)

        # The database answers again and has the key revoked: refused.
        source.pool = live
        await store.revoke_key(root, created["id"])
        clock.advance(TTL + 1)
        assert await store.authenticate(key) is None
