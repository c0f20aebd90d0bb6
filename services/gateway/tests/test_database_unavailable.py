"""A database the gateway cannot reach (here: every connection of its pool closed by the server, as
when PostgreSQL restarts) is 503 `database_unavailable` with Retry-After, never 500, for the routes
and for authenticating a stored key; the pool reconnects and the next requests are served."""

import asyncio
import secrets
import time

import psycopg

from services.gateway.tests.test_endpoints import assert_envelope


def terminate_connections(admin_dsn: str, database: str) -> int:
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    return len(rows)


async def terminate_once_reconnected(admin_dsn: str, database: str, timeout: float = 15.0) -> int:
    """Closes the pool's connections once it has one again: after a refusal the pool reconnects in
    the background, with a backoff that a loaded machine stretches."""
    deadline = time.monotonic() + timeout
    while True:
        closed = terminate_connections(admin_dsn, database)
        if closed or time.monotonic() > deadline:
            return closed
        await asyncio.sleep(0.05)


async def test_connections_closed_by_the_database_are_503_and_the_next_request_is_served(
    start_gateway, postgres_dsn, fake
):
    database = "unreachable_" + secrets.token_hex(4)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    # Its own database, so only this gateway's connections are closed; left to the session's server.
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, dbname=database)
    gw = await start_gateway(
        gateway_database_url=dsn,
        gateway_database_pool_size=1,
        gateway_request_log_retention_days=0,
        gateway_usage_flush_seconds=3600,
    )
    org = "org-" + secrets.token_hex(4)
    async with gw.client() as http:
        assert (await http.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        member = (await http.post("/v1/admin/keys", json={"org_id": org})).json()["key"]

    assert terminate_connections(postgres_dsn, database) >= 1
    async with gw.client() as http:
        refused = await http.get("/v1/admin/keys")
    assert_envelope(refused, 503, "database_unavailable")
    assert int(refused.headers["retry-after"]) >= 1

    assert await terminate_once_reconnected(postgres_dsn, database) >= 1
    async with gw.client(api_key=member) as member_http:
        # A stored key not cached yet: authenticating it needs the database.
        refused = await member_http.get("/v1/models")
    assert_envelope(refused, 503, "database_unavailable")

    async with gw.client() as http, gw.client(api_key=member) as member_http:
        assert (await http.get("/v1/admin/keys")).status_code == 200
        chat = {"model": gw.model, "messages": [{"role": "user", "content": "hi"}]}
        assert (await member_http.post("/v1/chat/completions", json=chat)).status_code == 200
