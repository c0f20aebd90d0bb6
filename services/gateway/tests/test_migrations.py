"""Replicas starting together migrate one at a time: the one that waited for the lock finds every
migration the other applied committed, and applies none again."""

import asyncio
import secrets

import psycopg
from gateway_service.db import migrate, migrations
from psycopg_pool import AsyncConnectionPool


async def test_replicas_migrating_at_once_apply_each_migration_once(postgres_dsn):
    name = "migrate_" + secrets.token_hex(4)
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn, dbname=name)
    try:
        pools = [AsyncConnectionPool(dsn, min_size=1, max_size=1, open=False) for _ in range(3)]
        for pool in pools:
            await pool.open(wait=True)
        try:
            applied = await asyncio.gather(*(migrate(pool) for pool in pools))
        finally:
            for pool in pools:
                await pool.close()
        versions = [v for v, _ in migrations()]
        assert sorted(applied, key=len) == [[], [], versions]
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
