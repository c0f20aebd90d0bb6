"""A request that cannot get a database connection within the pool timeout is 503 with Retry-After,
never 500, on every path that uses the pool (routes and key authentication); once the pool frees up
the same requests are served. The pool is real and holds one connection, kept busy by a query
waiting on a table lock the test holds."""

import asyncio
import secrets

import psycopg

from services.gateway.tests.lock_waits import wait_for_lock_waiter
from services.gateway.tests.test_endpoints import assert_envelope

POOL_TIMEOUT_SECONDS = 0.5


async def test_pool_timeout_is_503_with_retry_after_and_the_next_request_is_served(
    start_gateway, postgres_dsn, fake
):
    gw = await start_gateway(
        gateway_database_url=postgres_dsn,
        gateway_database_pool_size=1,
        gateway_database_timeout_seconds=POOL_TIMEOUT_SECONDS,
        gateway_request_log_retention_days=0,
        gateway_usage_flush_seconds=3600,
    )
    org = "org-" + secrets.token_hex(4)
    async with gw.client() as http:
        assert (await http.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        member = (await http.post("/v1/admin/keys", json={"org_id": org})).json()["key"]

    async with gw.client() as holder_http:
        with psycopg.connect(postgres_dsn) as locker:
            locker.execute("LOCK TABLE gateway.usage_events IN ACCESS EXCLUSIVE MODE")
            # Holds the only connection: its read waits on the lock.
            holder = asyncio.create_task(holder_http.get("/v1/usage"))
            # Until its query waits on the lock (it then holds the pool's connection).
            await wait_for_lock_waiter(postgres_dsn)
            async with gw.client() as http, gw.client(api_key=member) as member_http:
                busy = await http.get("/v1/admin/keys")
                error = assert_envelope(busy, 503, "database_busy")
                assert error["type"] == "server_error"
                assert int(busy.headers["retry-after"]) >= 1
                # Authenticating a stored key needs the pool too (nothing cached for it yet).
                busy = await member_http.get("/v1/models")
                assert_envelope(busy, 503, "database_busy")
                assert int(busy.headers["retry-after"]) >= 1
            assert not holder.done()
            locker.rollback()
        assert (await holder).status_code == 200
    async with gw.client() as http, gw.client(api_key=member) as member_http:
        assert (await http.get("/v1/admin/keys")).status_code == 200
        chat = {"model": gw.model, "messages": [{"role": "user", "content": "hi"}]}
        assert (await member_http.post("/v1/chat/completions", json=chat)).status_code == 200


async def test_a_statement_stuck_behind_a_lock_is_cancelled_into_503_and_frees_its_connection(
    start_gateway, postgres_dsn, fake
):
    gw = await start_gateway(
        gateway_database_url=postgres_dsn,
        gateway_database_pool_size=1,
        gateway_database_statement_timeout_seconds=0.5,
        gateway_request_log_retention_days=0,
        gateway_usage_flush_seconds=3600,
    )
    async with gw.client() as http:
        with psycopg.connect(postgres_dsn) as locker:
            locker.execute("LOCK TABLE gateway.usage_events IN ACCESS EXCLUSIVE MODE")
            stuck = await http.get("/v1/usage")
            error = assert_envelope(stuck, 503, "database_busy")
            assert int(stuck.headers["retry-after"]) >= 1
            # The cancelled statement gave its connection back: another route is served meanwhile.
            assert (await http.get("/v1/admin/orgs")).status_code == 200
        assert error["type"] == "server_error"
        assert (await http.get("/v1/usage")).status_code == 200
