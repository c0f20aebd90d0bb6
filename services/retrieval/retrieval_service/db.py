"""Chunks and their embeddings in PostgreSQL with pgvector.

Every statement is parameterised. Every query filters on tenant and collection in SQL,
so one tenant's rows can never be returned to another whatever the caller passes.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from llmsuite_common.errors import DeadlineExceeded, Unavailable

log = logging.getLogger(__name__)

TABLE = "retrieval_chunks"
# Any constant works; it only has to be the same in every replica creating the schema.
_SCHEMA_LOCK_KEY = 0x6C6C6D7375697465

# A separate (tenant, collection) index is not created: the unique index below starts
# with those columns and serves the same lookups without a second write per row.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant text NOT NULL,
    collection text NOT NULL,
    source_id text NOT NULL,
    ordinal integer NOT NULL CHECK (ordinal >= 0),
    text text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    content_hash bytea NOT NULL,
    embedding vector({dimension}) NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT {unique} UNIQUE (tenant, collection, source_id, ordinal)
);
CREATE INDEX IF NOT EXISTS {hnsw} ON {table}
    USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction});
"""


@dataclass(frozen=True, slots=True)
class NewChunk:
    ordinal: int
    text: str
    content_hash: bytes
    embedding: np.ndarray


@dataclass(frozen=True, slots=True)
class NewDocument:
    source_id: str
    metadata: dict[str, str]
    chunks: list[NewChunk]


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    source_id: str
    ordinal: int
    text: str
    metadata: dict[str, str]
    score: float


class ChunkStore:
    def __init__(
        self,
        *,
        min_size: int,
        max_size: int,
        pool_timeout: float,
        hnsw_m: int,
        hnsw_ef_construction: int,
    ) -> None:
        self._min_size = min_size
        self._max_size = max_size
        self._pool_timeout = pool_timeout
        self._hnsw_m = hnsw_m
        self._hnsw_ef_construction = hnsw_ef_construction
        self._pool: AsyncConnectionPool | None = None
        self._iterative_scan = False

    async def open(self, conninfo: str, *, dimension: int, timeout: float = 30.0) -> None:
        """Create the schema if needed, then fill the pool. `dimension` is the embedding model's."""
        pool = AsyncConnectionPool(
            conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._pool_timeout,
            open=False,
            configure=self._configure,
            # Pre-ping on checkout: after a database restart the first caller gets a
            # fresh connection instead of a broken one.
            check=AsyncConnectionPool.check_connection,
            name="retrieval",
        )
        async with asyncio.timeout(timeout):
            await self._create_schema(conninfo, dimension)
            await pool.open(wait=True, timeout=timeout)
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _create_schema(self, conninfo: str, dimension: int) -> None:
        statement = sql.SQL(_SCHEMA).format(
            table=sql.Identifier(TABLE),
            unique=sql.Identifier(f"{TABLE}_doc_ordinal_key"),
            hnsw=sql.Identifier(f"{TABLE}_embedding_hnsw"),
            dimension=sql.Literal(dimension),
            m=sql.Literal(self._hnsw_m),
            ef_construction=sql.Literal(self._hnsw_ef_construction),
        )
        async with await psycopg.AsyncConnection.connect(conninfo) as conn:
            async with conn.transaction():
                # Replicas starting together would otherwise race on CREATE EXTENSION.
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                await conn.execute(statement)
                row = await (
                    await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).fetchone()
        version = tuple(int(p) for p in str(row[0] if row else "0").split(".")[:2] if p.isdigit())
        # Filtered HNSW scans can come back short of k; pgvector 0.8 can keep scanning.
        self._iterative_scan = version >= (0, 8)
        log.info("schema ready", extra={"pgvector": row[0] if row else None})

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection) -> None:
        await register_vector_async(conn)
        PsycopgInstrumentor.instrument_connection(conn)
        # configure() must leave the connection idle, not inside a transaction.
        await conn.commit()

    @contextlib.asynccontextmanager
    async def _transaction(
        self, timeout: float, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection inside a transaction, with `settings` applied to that transaction only."""
        if self._pool is None:
            raise Unavailable("the vector store is not open yet")
        if timeout <= 0:
            raise DeadlineExceeded("the deadline passed before the database was reached")
        # The server stops the work too when the budget runs out, not only this client.
        local = {"statement_timeout": f"{max(1, int(timeout * 1000))}ms", **(settings or {})}
        with _database_errors():
            async with asyncio.timeout(timeout):
                async with self._pool.connection(timeout=min(timeout, self._pool_timeout)) as conn:
                    async with conn.transaction():
                        # One round trip for every setting.
                        await conn.execute(
                            sql.SQL("SELECT {}").format(
                                sql.SQL(", ").join(
                                    sql.SQL("set_config({}, {}, true)").format(
                                        sql.Literal(k), sql.Placeholder()
                                    )
                                    for k in local
                                )
                            ),
                            list(local.values()),
                        )
                        yield conn

    async def known_embeddings(
        self,
        tenant: str,
        collection: str,
        source_ids: Sequence[str],
        hashes: Sequence[bytes],
        *,
        timeout: float,
    ) -> dict[bytes, np.ndarray]:
        """Stored embeddings of chunk texts these documents already had: re-ingest skips the model."""
        if not source_ids or not hashes:
            return {}
        async with self._transaction(timeout) as conn:
            cursor = await conn.execute(
                f"""SELECT DISTINCT ON (content_hash) content_hash, embedding FROM {TABLE}
                    WHERE tenant = %s AND collection = %s
                      AND source_id = ANY(%s) AND content_hash = ANY(%s)""",
                (tenant, collection, list(source_ids), list(hashes)),
            )
            return {bytes(h): e.to_numpy() for h, e in await cursor.fetchall()}

    async def replace_documents(
        self, tenant: str, collection: str, documents: Sequence[NewDocument], *, timeout: float
    ) -> None:
        """Swap each document's chunks for the new ones in one transaction.

        Readers see the old chunks or the new ones, never a mix or a half-written document.
        """
        source_ids = sorted({d.source_id for d in documents})
        rows = [
            (
                tenant,
                collection,
                d.source_id,
                c.ordinal,
                c.text,
                Jsonb(d.metadata),
                c.content_hash,
                c.embedding,
            )
            for d in documents
            for c in d.chunks
        ]
        async with self._transaction(timeout) as conn:
            async with conn.cursor() as cursor:
                # Two ingests of the same document would otherwise both delete, then
                # collide on the unique key; sorted order keeps lock-taking deadlock-free.
                await cursor.executemany(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [(f"{tenant}\x1f{collection}\x1f{s}",) for s in source_ids],
                )
                await cursor.execute(
                    f"DELETE FROM {TABLE} WHERE tenant = %s AND collection = %s AND source_id = ANY(%s)",
                    (tenant, collection, source_ids),
                )
                if rows:
                    await cursor.executemany(
                        f"""INSERT INTO {TABLE}
                            (tenant, collection, source_id, ordinal, text, metadata, content_hash, embedding)
                            VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                        rows,
                    )

    async def search(
        self, tenant: str, collection: str, embedding: np.ndarray, *, k: int, ef_search: int, timeout: float
    ) -> list[Hit]:
        """The k chunks nearest to `embedding` in one tenant's collection, closest first."""
        params = {"q": embedding, "tenant": tenant, "collection": collection, "k": k}
        settings = {"hnsw.ef_search": str(max(ef_search, k))}
        if self._iterative_scan:
            settings["hnsw.iterative_scan"] = "strict_order"
        async with self._transaction(timeout, settings) as conn:
            hits = await _nearest(conn, params)
            if len(hits) < k:
                # An HNSW scan yields ef_search candidates from the whole table and only
                # then applies the tenant/collection filter, so a collection holding a
                # small share of the table can come back short, or empty. Searching its
                # own rows exactly fixes that; it runs only after a short answer, which
                # for a collection with fewer than k chunks is a cheap scan anyway.
                await conn.execute("SELECT set_config('enable_indexscan', 'off', true)")
                hits = await _nearest(conn, params)
        return hits


async def _nearest(conn: psycopg.AsyncConnection, params: dict[str, object]) -> list[Hit]:
    cursor = await conn.execute(
        f"""SELECT id, source_id, ordinal, text, metadata, 1 - (embedding <=> %(q)s) AS score
            FROM {TABLE}
            WHERE tenant = %(tenant)s AND collection = %(collection)s
            ORDER BY embedding <=> %(q)s
            LIMIT %(k)s""",
        params,
    )
    return [
        Hit(str(i), source_id, ordinal, text, metadata, float(score))
        for i, source_id, ordinal, text, metadata, score in await cursor.fetchall()
    ]


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    """Database failures as statuses callers can act on, without driver text (it may hold a DSN)."""
    try:
        yield
    except psycopg.errors.QueryCanceled as exc:
        raise DeadlineExceeded("the deadline passed while querying the vector store") from exc
    except TimeoutError as exc:
        raise DeadlineExceeded("the deadline passed while querying the vector store") from exc
    except PoolTimeout as exc:
        raise Unavailable("no vector store connection became free in time") from exc
    except psycopg.OperationalError as exc:
        log.warning("vector store unavailable", extra={"error": type(exc).__name__})
        raise Unavailable("the vector store is unavailable") from exc
