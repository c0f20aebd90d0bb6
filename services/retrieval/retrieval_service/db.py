"""Chunks and their embeddings in PostgreSQL with pgvector.

Every statement is parameterised. Every query filters on tenant and collection in SQL,
so one tenant's rows can never be returned to another whatever the caller passes.
"""

import asyncio
import contextlib
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import orjson
import psycopg
from llmsuite_common.errors import DeadlineExceeded, NotFound, Unavailable
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from pgvector.psycopg import register_vector_async
from psycopg import sql
from psycopg.types.json import Jsonb, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .db_outage import OutageWatch

log = logging.getLogger(__name__)

TABLE = "retrieval_chunks"
HNSW_INDEX = f"{TABLE}_embedding_hnsw"
COLLECTIONS = "retrieval_collections"
DOCUMENTS = "retrieval_documents"
# A connection idle longer than this is pinged before it is handed out again.
PING_AFTER_IDLE_SECONDS = 1.0
# pgvector's upper bound for hnsw.ef_search.
MAX_EF_SEARCH = 1000
# Reciprocal rank fusion's damping constant, the value from Cormack et al. (2009).
RRF_K = 60
# Any constant works; it only has to be the same in every replica creating the schema.
_SCHEMA_LOCK_KEY = 0x6C6C6D7375697465
# Recorded by create_schema; a service started without it (migrate-on-start off) needs at least this.
SCHEMA_VERSION = 1
SCHEMA_VERSIONS = "retrieval_schema_migrations"

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
-- Vectors stay in the row (storage MAIN: compressed or moved out only as a last resort, where
-- pgvector's default moves them out first). A row of a 384-dimension vector, its text and the
-- text's tsvector is over the 2 kB at which PostgreSQL moves values out of line; with the vector
-- out of line, an exact scan (a small collection, a filter, the fallback below) fetched every
-- vector from the TOAST table: 834 buffers for 200 chunks instead of 259, 0.45 ms instead of 0.1.
-- Rows written before keep their storage until they are rewritten (re-ingested).
DO $$
BEGIN
    IF (SELECT attstorage FROM pg_attribute
        WHERE attrelid = {table_name}::regclass AND attname = 'embedding') <> 'm' THEN
        ALTER TABLE {table} ALTER COLUMN embedding SET STORAGE MAIN;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS {hnsw} ON {table}
    USING hnsw (embedding vector_cosine_ops) WITH (m = {m}, ef_construction = {ef_construction});
-- Full-text side of hybrid search; generated, so bulk loads that name only the base columns fill it.
ALTER TABLE {table} ADD COLUMN IF NOT EXISTS tsv tsvector
    GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX IF NOT EXISTS {gin} ON {table} USING gin (tsv);
-- `version` grows with every change to a collection's contents: cached results carry the
-- version they were computed at, so every replica sees a write as soon as it commits.
CREATE TABLE IF NOT EXISTS {collections} (
    tenant text NOT NULL,
    name text NOT NULL,
    description text NOT NULL DEFAULT '',
    version bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name)
);
-- One row per stored document: its content hash makes re-ingesting unchanged content a no-op.
CREATE TABLE IF NOT EXISTS {documents} (
    tenant text NOT NULL,
    collection text NOT NULL,
    source_id text NOT NULL,
    content_hash bytea NOT NULL,
    chunks integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, collection, source_id)
);
CREATE TABLE IF NOT EXISTS {versions} (
    version integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {versions} (version) VALUES ({version}) ON CONFLICT DO NOTHING;
"""


class SchemaNotReady(RuntimeError):
    """The database's schema is missing, older than this release's, or made for another model."""


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
    # Hash of everything the stored chunks derive from; equal hashes mean nothing to do.
    content_hash: bytes = b""


@dataclass(frozen=True, slots=True)
class DocumentRecord:
    """What the documents table keeps of a stored document."""

    source_id: str
    content_hash: bytes
    chunks: int


class ChunkWriter:
    """Adds chunk rows inside ChunkStore.replacing_documents' transaction."""

    def __init__(self, cursor: psycopg.AsyncCursor[Any], tenant: str, collection: str) -> None:
        self._cursor, self._tenant, self._collection = cursor, tenant, collection

    async def add(self, documents: Iterable[NewDocument]) -> None:
        """The documents' chunks (any part of a document's), by binary COPY."""
        rows = [
            (
                self._tenant,
                self._collection,
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
        if rows:
            await copy_rows(self._cursor, rows)


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    name: str
    description: str
    documents: int
    chunks: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Deleted:
    documents: int
    chunks: int


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    source_id: str
    ordinal: int
    text: str
    metadata: dict[str, str]
    score: float
    fused_score: float = 0.0


class Hits(list[Hit]):
    """Search results, closest first; `version` is the collection's version when the search was
    asked for it (ChunkStore.search with_version), else None."""

    version: str | None = None


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
        self._conninfo = ""
        self._iterative_scan = False
        self._outage = OutageWatch(self._ping, self._renew_pool)
        # Session settings each pooled connection holds (see _reading).
        self._session: weakref.WeakKeyDictionary[psycopg.AsyncConnection, dict[str, str]] = (
            weakref.WeakKeyDictionary()
        )
        # When each pooled connection last finished a transaction (see _check).
        self._worked_at: weakref.WeakKeyDictionary[psycopg.AsyncConnection, float] = (
            weakref.WeakKeyDictionary()
        )

    def _new_pool(self) -> AsyncConnectionPool:
        return AsyncConnectionPool(
            self._conninfo,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._pool_timeout,
            open=False,
            configure=self._configure,
            # Reads are single statements (_reading): no BEGIN/COMMIT round trips; writes open
            # their own transaction (_transaction).
            kwargs={"autocommit": True},
            # Pre-ping on checkout: after a database restart the first caller gets a
            # fresh connection instead of a broken one. Skipped for a connection that
            # finished a transaction within PING_AFTER_IDLE_SECONDS: under load every
            # checkout would pay a round trip for a connection just seen working.
            check=self._check,
            name="retrieval",
        )

    async def open(
        self, conninfo: str, *, dimension: int, timeout: float = 30.0, create_schema: bool = True
    ) -> None:
        """Create the schema if needed (else check it: SchemaNotReady), then fill the pool.
        `dimension` is the embedding model's."""
        self._conninfo = conninfo
        pool = self._new_pool()
        async with asyncio.timeout(timeout):
            if create_schema:
                await self.create_schema(conninfo, dimension)
            else:
                await self.check_schema(conninfo, dimension)
            await pool.open(wait=True, timeout=timeout)
        self._pool = pool

    async def close(self) -> None:
        await self._outage.close()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def _check(self, conn: psycopg.AsyncConnection) -> None:
        worked = self._worked_at.get(conn)
        if worked is not None and time.monotonic() - worked < PING_AFTER_IDLE_SECONDS:
            return
        try:
            await AsyncConnectionPool.check_connection(conn)
        except Exception:
            self._outage.suspect()
            raise

    async def _connection(self, pool: AsyncConnectionPool, timeout: float) -> psycopg.AsyncConnection:
        """A connection from `pool`, unless the database is found down first (db_outage)."""
        getting = asyncio.ensure_future(pool.getconn(timeout))
        down = asyncio.ensure_future(self._outage.went_down())
        try:
            await asyncio.wait({getting, down}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await _give_back(pool, getting)
            raise
        finally:
            down.cancel()
        if not getting.done():
            await _give_back(pool, getting)
            raise Unavailable("the vector store is unavailable")
        return getting.result()

    async def _ping(self) -> None:
        async with asyncio.timeout(self._pool_timeout):
            conn = await psycopg.AsyncConnection.connect(self._conninfo)
        await conn.close()

    async def _renew_pool(self) -> None:
        """A fresh pool once the database answers again: the old one's reconnection may be backing
        off for many seconds more. Connections still out return to the old pool, closed after."""
        old, self._pool = self._pool, self._new_pool()
        await self._pool.open(wait=False)
        if old is not None:
            asyncio.get_running_loop().create_task(old.close(timeout=self._pool_timeout))

    async def create_schema(self, conninfo: str, dimension: int) -> None:
        """Tables and indexes, created where missing; also rebuilds a dropped HNSW index after a bulk load."""
        statement = sql.SQL(_SCHEMA).format(
            table=sql.Identifier(TABLE),
            table_name=sql.Literal(TABLE),
            unique=sql.Identifier(f"{TABLE}_doc_ordinal_key"),
            hnsw=sql.Identifier(HNSW_INDEX),
            gin=sql.Identifier(f"{TABLE}_tsv_gin"),
            collections=sql.Identifier(COLLECTIONS),
            documents=sql.Identifier(DOCUMENTS),
            versions=sql.Identifier(SCHEMA_VERSIONS),
            version=sql.Literal(SCHEMA_VERSION),
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
                pgvector = await self._learn_pgvector(conn)
        log.info("schema ready", extra={"pgvector": pgvector})

    async def check_schema(self, conninfo: str, dimension: int) -> None:
        """What a service whose role may not create tables checks instead of creating the schema:
        the recorded version, and the embedding column's dimension against the model's."""
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
            try:
                row = await (
                    await conn.execute(
                        sql.SQL("SELECT max(version) FROM {}").format(sql.Identifier(SCHEMA_VERSIONS))
                    )
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            found = row[0] if row and row[0] is not None else 0
            if found < SCHEMA_VERSION:
                raise SchemaNotReady(
                    f"the retrieval database schema is at version {found}, this release needs "
                    f"{SCHEMA_VERSION}: run `python -m retrieval_service.migrate` with a RETRIEVAL_DATABASE_URL "
                    "whose role may create tables (the chart's migration Job does), or set "
                    "RETRIEVAL_DATABASE_MIGRATE_ON_START=true"
                )
            stored = await _embedding_dimension(conn)
            if stored != dimension:
                raise SchemaNotReady(
                    f"{TABLE}.embedding holds {stored}-dimensional vectors but the embedding model "
                    f"makes {dimension}: the store was made for another model"
                )
            if not await _has_index(conn, HNSW_INDEX):
                # A bulk load drops it and builds it again when done; one interrupted leaves it out.
                log.warning(
                    "the vector index is missing: searches read every row until "
                    "`python -m retrieval_service.migrate` builds it again",
                    extra={"index": HNSW_INDEX},
                )
            pgvector = await self._learn_pgvector(conn)
        log.info("schema checked", extra={"version": found, "pgvector": pgvector})

    async def _learn_pgvector(self, conn: psycopg.AsyncConnection) -> str | None:
        row = await (
            await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).fetchone()
        version = tuple(int(p) for p in str(row[0] if row else "0").split(".")[:2] if p.isdigit())
        # Filtered HNSW scans can come back short of k; pgvector 0.8 can keep scanning.
        self._iterative_scan = version >= (0, 8)
        return str(row[0]) if row else None

    @staticmethod
    async def _configure(conn: psycopg.AsyncConnection) -> None:
        await register_vector_async(conn)
        # Each hit's metadata is jsonb: orjson parses it in a third of the json module's time.
        set_json_loads(orjson.loads, conn)
        PsycopgInstrumentor.instrument_connection(conn)
        # configure() must leave the connection idle, not inside a transaction.
        await conn.commit()

    @contextlib.asynccontextmanager
    async def _checked_out(self, timeout: float) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection within `timeout`, database errors mapped to statuses."""
        if self._pool is None:
            raise Unavailable("the vector store is not open yet")
        if self._outage.down:
            raise Unavailable("the vector store is unavailable")
        if timeout <= 0:
            raise DeadlineExceeded("the deadline passed before the database was reached")
        pool = self._pool
        with _database_errors(), self._watching_outages():
            async with asyncio.timeout(timeout):
                conn = await self._connection(pool, min(timeout, self._pool_timeout))
                try:
                    yield conn
                    self._worked_at[conn] = time.monotonic()
                finally:
                    await pool.putconn(conn)

    @contextlib.asynccontextmanager
    async def _transaction(
        self, timeout: float, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection inside a transaction, with `settings` applied to that transaction only."""
        # The server stops the work too when the budget runs out, not only this client.
        local = {"statement_timeout": f"{max(1, int(timeout * 1000))}ms", **(settings or {})}
        async with self._checked_out(timeout) as conn, conn.transaction():
            await conn.execute(_set_config(local, transaction_only=True), list(local.values()))
            yield conn

    @contextlib.asynccontextmanager
    async def _reading(
        self, timeout: float, settings: Mapping[str, str] | None = None
    ) -> AsyncIterator[psycopg.AsyncConnection]:
        """A pooled connection for reads, each statement its own transaction (autocommit).

        A search made BEGIN, set_config, SELECT and COMMIT, a pipeline that cost more CPU in the
        driver than the query did. Here the settings are the session's, sent only when they
        no longer serve (_holds); statement_timeout is in whole seconds so it rarely changes
        (the exact deadline is this client's, which cancels the query when it passes).
        """
        wanted = {"statement_timeout": f"{max(1, math.ceil(timeout))}s", **(settings or {})}
        async with self._checked_out(timeout) as conn:
            try:
                await self._apply(conn, wanted)
                yield conn
            except BaseException:
                # A cancelled or failed statement may have rolled a setting back.
                self._session.pop(conn, None)
                raise

    async def _apply(self, conn: psycopg.AsyncConnection, wanted: Mapping[str, str]) -> None:
        """Session settings on `conn`, in one statement, only those it does not hold yet."""
        held = self._session.setdefault(conn, {})
        changed = {k: v for k, v in wanted.items() if not _holds(k, held.get(k), v)}
        if not changed:
            return
        await conn.execute(_set_config(changed, transaction_only=False), list(changed.values()))
        held.update(changed)

    @contextlib.contextmanager
    def _watching_outages(self) -> Iterator[None]:
        """A connection that failed, or none in time: is the database down? (db_outage)"""
        try:
            yield
        except psycopg.errors.QueryCanceled:
            raise
        except (PoolTimeout, psycopg.OperationalError):
            self._outage.suspect()
            raise

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

    async def unchanged_documents(
        self, tenant: str, collection: str, hashes: Mapping[str, bytes], *, timeout: float
    ) -> dict[str, int]:
        """Ids among `hashes` whose stored document has exactly that content hash, with their chunk counts."""
        if not hashes:
            return {}
        async with self._transaction(timeout) as conn:
            cursor = await conn.execute(
                f"""SELECT source_id, content_hash, chunks FROM {DOCUMENTS}
                    WHERE tenant = %s AND collection = %s AND source_id = ANY(%s)""",
                (tenant, collection, list(hashes)),
            )
            return {s: n for s, h, n in await cursor.fetchall() if hashes.get(s) == bytes(h)}

    async def replace_documents(
        self, tenant: str, collection: str, documents: Sequence[NewDocument], *, timeout: float
    ) -> None:
        """Swap each document's chunks for the new ones in one transaction.

        Readers see the old chunks or the new ones, never a mix or a half-written document.
        Rows go in with binary COPY: one round trip however many chunks.
        """
        records = [DocumentRecord(d.source_id, d.content_hash, len(d.chunks)) for d in documents]
        async with self.replacing_documents(tenant, collection, records, timeout=timeout) as writer:
            await writer.add(documents)

    @contextlib.asynccontextmanager
    async def replacing_documents(
        self, tenant: str, collection: str, documents: Sequence[DocumentRecord], *, timeout: float
    ) -> AsyncIterator[ChunkWriter]:
        """One transaction that replaces `documents`: their old chunks are deleted, the new ones
        are added with the writer's `add` in as many parts as the caller likes, and all of it
        commits when the block ends, or none of it if the block raises."""
        source_ids = sorted({d.source_id for d in documents})
        async with self._transaction(timeout) as conn:
            async with conn.cursor() as cursor:
                # First: its row lock orders the collection's writers (delete_documents takes it
                # before the chunk rows too), so two of them never wait on each other's locks.
                await _touch_collection(cursor, tenant, collection)
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
                yield ChunkWriter(cursor, tenant, collection)
                await cursor.executemany(
                    f"""INSERT INTO {DOCUMENTS} (tenant, collection, source_id, content_hash, chunks)
                        VALUES (%s, %s, %s, %s, %s)
                        ON CONFLICT (tenant, collection, source_id) DO UPDATE
                        SET content_hash = EXCLUDED.content_hash, chunks = EXCLUDED.chunks,
                            updated_at = now()""",
                    [(tenant, collection, d.source_id, d.content_hash, d.chunks) for d in documents],
                )

    async def delete_documents(
        self, tenant: str, collection: str, source_ids: Sequence[str], *, timeout: float
    ) -> Deleted:
        """Removes the documents' rows and every chunk and vector they had."""
        async with self._transaction(timeout) as conn:
            async with conn.cursor() as cursor:
                await cursor.execute(
                    f"""SELECT version FROM {COLLECTIONS} WHERE tenant = %s AND name = %s FOR UPDATE""",
                    (tenant, collection),
                )
                await cursor.execute(
                    f"""DELETE FROM {TABLE} WHERE tenant = %s AND collection = %s AND source_id = ANY(%s)""",
                    (tenant, collection, list(source_ids)),
                )
                chunks = cursor.rowcount
                await cursor.execute(
                    f"""DELETE FROM {DOCUMENTS}
                        WHERE tenant = %s AND collection = %s AND source_id = ANY(%s)""",
                    (tenant, collection, list(source_ids)),
                )
                documents = cursor.rowcount
                if chunks or documents:
                    await _bump(cursor, tenant, collection)
        return Deleted(documents, chunks)

    async def create_collection(
        self, tenant: str, name: str, description: str, *, timeout: float
    ) -> tuple[CollectionInfo, bool]:
        async with self._transaction(timeout) as conn:
            cursor = await conn.execute(
                f"""INSERT INTO {COLLECTIONS} (tenant, name, description) VALUES (%s, %s, %s)
                    ON CONFLICT (tenant, name) DO NOTHING RETURNING name""",
                (tenant, name, description),
            )
            created = await cursor.fetchone() is not None
            found = await _collections(conn, tenant, name)
        return found[0], created

    async def list_collections(self, tenant: str, *, timeout: float) -> list[CollectionInfo]:
        async with self._transaction(timeout) as conn:
            return await _collections(conn, tenant, None)

    async def delete_collection(self, tenant: str, name: str, *, timeout: float) -> Deleted:
        async with self._transaction(timeout) as conn:
            async with conn.cursor() as cursor:
                await cursor.execute(
                    f"DELETE FROM {COLLECTIONS} WHERE tenant = %s AND name = %s", (tenant, name)
                )
                existed = cursor.rowcount > 0
                await cursor.execute(
                    f"DELETE FROM {TABLE} WHERE tenant = %s AND collection = %s", (tenant, name)
                )
                chunks = cursor.rowcount
                await cursor.execute(
                    f"DELETE FROM {DOCUMENTS} WHERE tenant = %s AND collection = %s", (tenant, name)
                )
                documents = cursor.rowcount
        if not (existed or chunks or documents):
            raise NotFound("no such collection", param="name")
        return Deleted(documents, chunks)

    async def collection_version(self, tenant: str, collection: str, *, timeout: float) -> str:
        """The collection's change counter, with its creation time since a collection made again
        counts from 0 again; empty when the collection does not exist."""
        async with self._reading(timeout) as conn:
            return await _version(conn, tenant, collection)

    async def get_chunk(self, tenant: str, chunk_id: str, *, timeout: float) -> tuple[str, Hit]:
        """One chunk of the tenant's and its collection; NotFound for anyone else's."""
        async with self._transaction(timeout) as conn:
            cursor = await conn.execute(
                f"""SELECT collection, id, source_id, ordinal, text, metadata FROM {TABLE}
                    WHERE tenant = %s AND id = %s""",
                (tenant, chunk_id),
            )
            row = await cursor.fetchone()
        if row is None:
            raise NotFound("no such chunk", param="chunk_id")
        collection, i, source_id, ordinal, text, metadata = row
        return collection, Hit(str(i), source_id, ordinal, text, metadata, 0.0)

    async def search(
        self,
        tenant: str,
        collection: str,
        embedding: np.ndarray,
        *,
        k: int,
        ef_search: int,
        timeout: float,
        filter: Mapping[str, str] | None = None,
        text_query: str = "",
        hybrid_weight: float = 0.0,
        with_version: bool = False,
    ) -> Hits:
        """The k chunks nearest to `embedding` in one tenant's collection, closest first.

        With `hybrid_weight` > 0 and a `text_query`, the vector and full-text rankings of a
        larger candidate pool are fused by reciprocal rank fusion instead. With `with_version`,
        the collection's version (collection_version) is read by the same statement: one
        statement instead of two, and the hits are never older than the version.
        """
        hybrid = hybrid_weight > 0 and bool(text_query.strip())
        pool = max(k * 4, ef_search) if hybrid else k
        params: dict[str, object] = {
            "q": embedding,
            "tenant": tenant,
            "collection": collection,
            "k": pool,
            "filter": Jsonb(dict(filter)) if filter else None,
            "text": text_query,
        }
        settings = {"hnsw.ef_search": str(min(MAX_EF_SEARCH, max(ef_search, pool)))}
        if self._iterative_scan:
            settings["hnsw.iterative_scan"] = "strict_order"
        async with self._reading(timeout, settings) as conn:
            # The version of the first statement that returns rows: a later one (a retry below)
            # sees the same or newer rows, so results cached under it are never stale.
            hits, version = await _nearest(conn, params, with_version=with_version)
            if len(hits) < pool and not self._iterative_scan and ef_search < MAX_EF_SEARCH:
                # An HNSW scan yields ef_search candidates from the whole table and only then
                # applies the tenant/collection/metadata filter, so a collection holding a
                # small share of the table, or a query whose nearest rows belong to others,
                # can come back short. pgvector 0.8 keeps scanning (iterative scan); before
                # it, a wider candidate list is tried first.
                # For this statement only: the session keeps the usual value.
                async with conn.transaction():
                    await conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(MAX_EF_SEARCH),))
                    hits, later = await _nearest(conn, params, with_version=with_version and version is None)
                version = version or later
            if len(hits) < pool:
                # Exact search over the collection's own rows: always complete, and cheap for
                # the usual cause, a collection with fewer than k chunks.
                hits, later = await _nearest(
                    conn, params, exact=True, with_version=with_version and version is None
                )
                version = version or later
            if hybrid:
                hits = fuse(hits, await _full_text(conn, params), k=k, text_weight=min(1.0, hybrid_weight))
            if with_version and version is None:
                # No row came back (an empty or missing collection) to carry it: read on its own.
                version = await _version(conn, tenant, collection)
        found = Hits(hits)
        found.version = version
        return found


def fuse(vector: Sequence[Hit], text: Sequence[Hit], *, k: int, text_weight: float) -> list[Hit]:
    """Reciprocal rank fusion of two rankings: each list adds weight / (RRF_K + rank)."""
    fused: dict[str, float] = {}
    by_id: dict[str, Hit] = {}
    for ranking, weight in ((vector, 1.0 - text_weight), (text, text_weight)):
        for rank, hit in enumerate(ranking, 1):
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + weight / (RRF_K + rank)
            by_id.setdefault(hit.chunk_id, hit)
    order = sorted(fused, key=lambda i: (-fused[i], -by_id[i].score))[:k]
    return [replace(by_id[i], fused_score=fused[i]) for i in order]


def _filter(params: Mapping[str, object]) -> str:
    # Left out when empty: the planner guesses `@>` keeps few rows and would skip the index.
    return "AND metadata @> %(filter)s" if params.get("filter") else ""


async def _nearest(
    conn: psycopg.AsyncConnection,
    params: dict[str, object],
    *,
    exact: bool = False,
    with_version: bool = False,
) -> tuple[list[Hit], str | None]:
    """The nearest chunks and, `with_version`, the collection's version (None if no row came back)."""
    cursor = await conn.execute(nearest_statement(params, exact=exact, with_version=with_version), params)
    rows = await cursor.fetchall()
    hits = [Hit(str(r[0]), r[1], r[2], r[3], r[4], float(r[5])) for r in rows]
    if not with_version or not rows or rows[0][6] is None:
        return hits, None
    return hits, _version_text(rows[0][6], rows[0][7])


def nearest_statement(params: Mapping[str, object], *, exact: bool, with_version: bool) -> str:
    """The search statement. The version columns are uncorrelated subqueries, evaluated once per
    statement (not per row), and leave the plan of the scan as it was."""
    # The exact form orders by an expression no index can serve. A planner setting such as
    # enable_indexscan would not do: psycopg prepares a statement run five times, and a
    # prepared generic plan keeps using the index whatever the setting.
    order = "(embedding <=> %(q)s) + 0" if exact else "embedding <=> %(q)s"
    version = (
        f""",
              (SELECT version FROM {COLLECTIONS} WHERE tenant = %(tenant)s AND name = %(collection)s),
              (SELECT created_at FROM {COLLECTIONS} WHERE tenant = %(tenant)s AND name = %(collection)s)"""
        if with_version
        else ""
    )
    return f"""SELECT id, source_id, ordinal, text, metadata, 1 - (embedding <=> %(q)s) AS score{version}
            FROM {TABLE}
            WHERE tenant = %(tenant)s AND collection = %(collection)s {_filter(params)}
            ORDER BY {order}
            LIMIT %(k)s"""


async def _version(conn: psycopg.AsyncConnection, tenant: str, collection: str) -> str:
    cursor = await conn.execute(
        f"SELECT version, created_at FROM {COLLECTIONS} WHERE tenant = %s AND name = %s", (tenant, collection)
    )
    row = await cursor.fetchone()
    return _version_text(row[0], row[1]) if row else ""


def _version_text(version: int, created_at: datetime) -> str:
    """A collection's version as callers see it: its creation time, since a collection made again
    counts from 0 again, and its change counter."""
    return f"{created_at.timestamp():.6f}:{version}"


async def _full_text(conn: psycopg.AsyncConnection, params: dict[str, object]) -> list[Hit]:
    # websearch_to_tsquery takes any user text without syntax errors: words are ANDed,
    # "quoted phrases", OR and -word work as in a web search engine.
    cursor = await conn.execute(
        f"""SELECT id, source_id, ordinal, text, metadata, 1 - (embedding <=> %(q)s) AS score
            FROM {TABLE}, websearch_to_tsquery('english', %(text)s) AS query
            WHERE tenant = %(tenant)s AND collection = %(collection)s {_filter(params)} AND tsv @@ query
            ORDER BY ts_rank_cd(tsv, query) DESC
            LIMIT %(k)s""",
        params,
    )
    return [
        Hit(str(i), source_id, ordinal, text, metadata, float(score))
        for i, source_id, ordinal, text, metadata, score in await cursor.fetchall()
    ]


async def _touch_collection(cursor: psycopg.AsyncCursor, tenant: str, collection: str) -> None:
    """Creates the collection on first write and bumps its version; the row lock orders writers."""
    await cursor.execute(
        f"""INSERT INTO {COLLECTIONS} (tenant, name) VALUES (%s, %s)
            ON CONFLICT (tenant, name) DO UPDATE SET version = {COLLECTIONS}.version + 1""",
        (tenant, collection),
    )


async def _bump(cursor: psycopg.AsyncCursor, tenant: str, collection: str) -> None:
    await cursor.execute(
        f"UPDATE {COLLECTIONS} SET version = version + 1 WHERE tenant = %s AND name = %s",
        (tenant, collection),
    )


async def _collections(conn: psycopg.AsyncConnection, tenant: str, name: str | None) -> list[CollectionInfo]:
    cursor = await conn.execute(
        f"""SELECT c.name, c.description, count(d.source_id), coalesce(sum(d.chunks), 0), c.created_at
            FROM {COLLECTIONS} c
            LEFT JOIN {DOCUMENTS} d ON d.tenant = c.tenant AND d.collection = c.name
            WHERE c.tenant = %(tenant)s AND (%(name)s::text IS NULL OR c.name = %(name)s)
            GROUP BY c.name, c.description, c.created_at
            ORDER BY c.name""",
        {"tenant": tenant, "name": name},
    )
    return [
        CollectionInfo(n, description, int(docs), int(chunks), created)
        for n, description, docs, chunks, created in await cursor.fetchall()
    ]


COPY_COLUMNS = (
    "tenant",
    "collection",
    "source_id",
    "ordinal",
    "text",
    "metadata",
    "content_hash",
    "embedding",
)
COPY_TYPES = ("text", "text", "text", "int4", "text", "jsonb", "bytea", "vector")


async def copy_rows(cursor: psycopg.AsyncCursor[Any], rows: Iterable[tuple[Any, ...]]) -> None:
    """Chunk rows in COPY_COLUMNS order by binary COPY: one stream, no per-row statement or parsing.

    The connection must have pgvector's types registered.
    """
    statement = f"COPY {TABLE} ({', '.join(COPY_COLUMNS)}) FROM STDIN WITH (FORMAT BINARY)"
    async with cursor.copy(statement) as copy:
        copy.set_types(list(COPY_TYPES))
        for row in rows:
            await copy.write_row(row)


async def _embedding_dimension(conn: psycopg.AsyncConnection) -> int:
    """The n of the embedding column's vector(n) (pgvector keeps it as the type modifier)."""
    row = await (
        await conn.execute(
            "SELECT atttypmod FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
            (TABLE,),
        )
    ).fetchone()
    return int(row[0]) if row else 0


async def _has_index(conn: psycopg.AsyncConnection, name: str) -> bool:
    row = await (await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))).fetchone()
    return bool(row and row[0])


async def _give_back(pool: AsyncConnectionPool, getting: "asyncio.Future[psycopg.AsyncConnection]") -> None:
    """Stops waiting for a connection; one that came all the same goes back to the pool."""
    getting.cancel()
    with contextlib.suppress(BaseException):
        await asyncio.shield(asyncio.gather(getting, return_exceptions=True))
    if getting.done() and not getting.cancelled() and getting.exception() is None:
        await pool.putconn(getting.result())


def _set_config(settings: Mapping[str, str], *, transaction_only: bool) -> sql.Composed:
    """One statement setting every name in `settings`, values as parameters in that order."""
    scope = sql.Literal(transaction_only)
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, {})").format(sql.Literal(k), sql.Placeholder(), scope)
            for k in settings
        )
    )


def _holds(name: str, held: str | None, wanted: str) -> bool:
    """Whether a connection's setting serves: a statement_timeout ("<n>s") at least the one
    wanted and at most twice it (deadlines differ by milliseconds from call to call; the client
    cancels at its exact deadline anyway), anything else only as the same value."""
    if held is None or name != "statement_timeout":
        return held == wanted
    have, need = int(held.removesuffix("s")), int(wanted.removesuffix("s"))
    return need <= have <= 2 * need


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
