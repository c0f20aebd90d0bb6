"""`python -m retrieval_service.migrate` creates the schema in an empty database and is safe to run
again; a service with RETRIEVAL_DATABASE_MIGRATE_ON_START=false then starts, writes and searches
through a role that may only read and write rows, and refuses to start against an empty database."""

import hashlib
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from retrieval_service.app import RetrievalApp
from retrieval_service.db import SCHEMA_VERSION, SCHEMA_VERSIONS, NewChunk, NewDocument, SchemaNotReady
from retrieval_service.settings import RetrievalSettings

# The grants an operator gives the services' role (k8s/README.md, "Database roles").
APP_GRANTS = """
GRANT USAGE ON SCHEMA public TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role};
"""


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    name = "rtv_migrate_" + secrets.token_hex(4)
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield psycopg.conninfo.make_conninfo(database_url, dbname=name)
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def run_migrate(dsn: str, model_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RETRIEVAL_DATABASE_URL": dsn, "RETRIEVAL_EMBEDDING_MODEL_DIR": str(model_dir)}
    return subprocess.run(
        [sys.executable, "-m", "retrieval_service.migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def app_role(dsn: str) -> str:
    role = "app_" + secrets.token_hex(4)
    password = secrets.token_hex(8)
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        admin.execute(
            f"REVOKE CREATE ON SCHEMA public FROM PUBLIC; REVOKE CREATE ON DATABASE {admin.info.dbname} FROM PUBLIC"
        )
        admin.execute(APP_GRANTS.format(role=role))
    return psycopg.conninfo.make_conninfo(dsn, user=role, password=password)


def service(settings: RetrievalSettings, dsn: str) -> RetrievalApp:
    checked = settings.model_copy(
        update={"retrieval_database_url": SecretStr(dsn), "retrieval_database_migrate_on_start": False}
    )
    return RetrievalApp(checked, registry=CollectorRegistry())


async def test_without_migrate_on_start_the_service_refuses_an_empty_database(
    empty_database, retrieval_settings
):
    app = service(retrieval_settings, empty_database)
    try:
        with pytest.raises(
            SchemaNotReady, match=r"version 0, this release needs .*retrieval_service\.migrate"
        ):
            await app.start()
    finally:
        await app.stop()


async def test_migrate_then_a_service_without_ddl_rights_starts_writes_and_searches(
    empty_database, retrieval_settings, model_dir
):
    for _ in range(2):  # the second run finds everything in place
        done = run_migrate(empty_database, model_dir)
        assert done.returncode == 0, done.stderr
    with psycopg.connect(empty_database) as conn:
        assert conn.execute(f"SELECT version FROM {SCHEMA_VERSIONS}").fetchall() == [(SCHEMA_VERSION,)]
    dsn = app_role(empty_database)
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE not_allowed (x int)")

    app = service(retrieval_settings, dsn)
    try:
        await app.start()
        store = app._store
        vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
        chunk = NewChunk(0, "hello", hashlib.sha256(b"hello").digest(), vector)
        await store.create_collection("t", "c", "", timeout=10)
        await store.replace_documents("t", "c", [NewDocument("d", {}, [chunk])], timeout=10)
        hits = await store.search("t", "c", vector, k=1, ef_search=40, timeout=10)
        assert [h.source_id for h in hits] == ["d"]
    finally:
        await app.stop()
