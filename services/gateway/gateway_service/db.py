"""The gateway's PostgreSQL: a connection pool and versioned migrations, applied on start or by
`python -m gateway_service.migrate` (GATEWAY_DATABASE_MIGRATE_ON_START=false then only checks them)."""

import asyncio
import logging
from importlib import resources

import psycopg
from llmsuite_common.embedded_postgres import EmbeddedPostgres
from psycopg_pool import AsyncConnectionPool

from .settings import GatewaySettings

log = logging.getLogger(__name__)

# Serialises migrations between replicas starting together.
_MIGRATION_LOCK = 0x6C6C6D73


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every migrations/NNNN_name.sql, in order."""
    folder = resources.files(__package__).joinpath("migrations")
    found = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(int(p.name.split("_", 1)[0]), p.read_text()) for p in found]


class SchemaNotReady(RuntimeError):
    """The database's schema is missing or older than this release's migrations."""


def latest_version() -> int:
    return migrations()[-1][0]


async def check_schema(pool: AsyncConnectionPool) -> int:
    """Returns the schema's version; raises SchemaNotReady when it is behind this release's.

    A newer version passes: during a rolling upgrade the migration Job has already run, and the
    migrations only add what the previous release does not read.
    """
    wanted = latest_version()
    async with pool.connection() as conn:
        try:
            row = await (await conn.execute("SELECT max(version) FROM gateway.schema_migrations")).fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
    found = row[0] if row and row[0] is not None else 0
    if found < wanted:
        raise SchemaNotReady(
            f"the gateway's database schema is at version {found}, this release needs {wanted}: "
            "run `python -m gateway_service.migrate` with a GATEWAY_DATABASE_URL whose role may create "
            "tables (the chart's migration Job does), or set GATEWAY_DATABASE_MIGRATE_ON_START=true"
        )
    return found


async def migrate(pool: AsyncConnectionPool) -> list[int]:
    """Applies the migrations not yet applied, each in its own transaction; returns their versions."""
    applied: list[int] = []
    async with pool.connection() as conn:
        # Waiting for another replica's migrations, and a long migration, are not stuck queries.
        await conn.execute("SET statement_timeout = 0")
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            await conn.execute("CREATE SCHEMA IF NOT EXISTS gateway")
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS gateway.schema_migrations "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            await conn.commit()
            rows = await (await conn.execute("SELECT version FROM gateway.schema_migrations")).fetchall()
            # Ends the read's transaction, so each migration below commits on its own (inside an
            # open transaction it would be a savepoint, committed only after the lock is released:
            # a replica waiting for the lock would find none of them and apply them again).
            await conn.commit()
            done = {r[0] for r in rows}
            for version, sql in migrations():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)  # type: ignore[arg-type]
                    await conn.execute(
                        "INSERT INTO gateway.schema_migrations (version) VALUES (%s)", (version,)
                    )
                applied.append(version)
                log.info("migration applied", extra={"version": version})
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
            await conn.execute("RESET statement_timeout")
            await conn.commit()
    return applied


class Database:
    """Opened with the app: joins the embedded server or connects to GATEWAY_DATABASE_URL, then migrates
    (or, with GATEWAY_DATABASE_MIGRATE_ON_START false, checks the schema is current)."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._dsn = settings.gateway_database_url.get_secret_value()
        self._embedded = EmbeddedPostgres(settings.gateway_pgserver_data_dir) if not self._dsn else None
        self._timeout = settings.gateway_database_timeout_seconds
        self._pool_size = settings.gateway_database_pool_size
        self._statement_timeout = settings.gateway_database_statement_timeout_seconds
        self._migrate = settings.gateway_database_migrate_on_start
        self.pool: AsyncConnectionPool | None = None

    @staticmethod
    def configured(settings: GatewaySettings) -> bool:
        return bool(settings.gateway_database_url.get_secret_value() or settings.gateway_pgserver_data_dir)

    async def open(self, *, migrate_schema: bool | None = None) -> list[int]:
        """Returns the migrations applied (none when only checking). `migrate_schema` overrides the setting."""
        dsn = self._dsn or await asyncio.to_thread(self._embedded.start)  # type: ignore[union-attr]
        # Every statement is bounded too: a query stuck behind a lock would otherwise hold its
        # connection (and the request, or the request-log writer) for as long as the lock lasts.
        statement_ms = int(self._statement_timeout * 1000)
        self.pool = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=self._pool_size,
            timeout=self._timeout,
            kwargs={"options": f"-c statement_timeout={statement_ms}"},
            open=False,
        )
        await self.pool.open(wait=True, timeout=self._timeout * 6)
        if self._migrate if migrate_schema is None else migrate_schema:
            return await migrate(self.pool)
        await check_schema(self.pool)
        return []

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.release)
