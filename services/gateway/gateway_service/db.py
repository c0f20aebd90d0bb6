"""The gateway's PostgreSQL: a connection pool and versioned migrations applied on start."""

import asyncio
import logging
from importlib import resources

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
    """Opened with the app: joins the embedded server or connects to GATEWAY_DATABASE_URL, then migrates."""

    def __init__(self, settings: GatewaySettings) -> None:
        self._dsn = settings.gateway_database_url.get_secret_value()
        self._embedded = EmbeddedPostgres(settings.gateway_pgserver_data_dir) if not self._dsn else None
        self._timeout = settings.gateway_database_timeout_seconds
        self._pool_size = settings.gateway_database_pool_size
        self._statement_timeout = settings.gateway_database_statement_timeout_seconds
        self.pool: AsyncConnectionPool | None = None

    @staticmethod
    def configured(settings: GatewaySettings) -> bool:
        return bool(settings.gateway_database_url.get_secret_value() or settings.gateway_pgserver_data_dir)

    async def open(self) -> None:
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
        await migrate(self.pool)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()
            self.pool = None
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.release)
