"""`python -m gateway_service.migrate` brings an empty database to the current version and is safe to
run again; a gateway with GATEWAY_DATABASE_MIGRATE_ON_START=false then serves through a role that may
only read and write rows, and refuses to start, saying what to run, against an unmigrated database."""

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import psycopg
import pytest
from gateway_service.db import Database, SchemaNotReady, latest_version, migrations
from gateway_service.settings import GatewaySettings

# The grants an operator gives the services' role (k8s/README.md, "Database roles").
APP_GRANTS = """
GRANT USAGE ON SCHEMA gateway TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA gateway TO {role};
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA gateway TO {role};
"""


@pytest.fixture
def database(postgres_dsn: str) -> Iterator[str]:
    name = "migrate_cmd_" + secrets.token_hex(4)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def run_migrate(dsn: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GATEWAY_DATABASE_URL": dsn, "GATEWAY_PGSERVER_DATA_DIR": ""}
    return subprocess.run(
        [sys.executable, "-m", "gateway_service.migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM gateway.schema_migrations ORDER BY 1")]


def app_role(database_dsn: str) -> str:
    """A login role with the row grants only: no CREATE on the database or its schemas."""
    role = "app_" + secrets.token_hex(4)
    password = secrets.token_hex(8)
    with psycopg.connect(database_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(
            f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; REVOKE CREATE ON DATABASE "
            f"{admin.info.dbname} FROM PUBLIC"
        )
        admin.execute(APP_GRANTS.format(role=role))
    return psycopg.conninfo.make_conninfo(database_dsn, user=role, password=password)


def test_migrate_brings_an_empty_database_to_the_current_version_and_is_idempotent(database):
    first = run_migrate(database)
    assert first.returncode == 0, first.stderr
    assert versions(database)[-1] == latest_version()
    again = run_migrate(database)
    assert again.returncode == 0, again.stderr
    assert '"applied":[]' in again.stderr
    assert versions(database) == [v for v, _ in migrations()]


async def test_without_migrate_on_start_the_gateway_refuses_an_unmigrated_database(database):
    settings = GatewaySettings(
        gateway_api_key="k", gateway_database_url=database, gateway_database_migrate_on_start=False
    )
    db = Database(settings)
    try:
        with pytest.raises(SchemaNotReady, match=r"version 0, this release needs .*gateway_service\.migrate"):
            await db.open()
    finally:
        await db.close()


async def test_without_migrate_on_start_the_gateway_serves_through_a_role_without_ddl(
    database, start_gateway, fake
):
    assert run_migrate(database).returncode == 0
    dsn = app_role(database)
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE gateway.not_allowed (x int)")
    # Its own migrations would need DDL: with migrate-on-start on, this role could not start.
    gw = await start_gateway(gateway_database_url=dsn, gateway_database_migrate_on_start=False)
    org = "org-" + secrets.token_hex(4)
    async with gw.client() as http:
        assert (await http.post("/v1/admin/orgs", json={"id": org})).status_code == 201
        member = (await http.post("/v1/admin/keys", json={"org_id": org})).json()["key"]
    async with gw.client(api_key=member) as member_http:
        chat = {"model": gw.model, "messages": [{"role": "user", "content": "hi"}]}
        assert (await member_http.post("/v1/chat/completions", json=chat)).status_code == 200
