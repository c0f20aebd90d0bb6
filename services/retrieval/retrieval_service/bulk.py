"""Bulk loading of chunk rows with binary COPY, and synthetic corpora for recall tests and benchmarks.

Binary COPY sends every row in one stream with no per-row statement or text parsing;
for a large import, drop the HNSW index first and let `ChunkStore.create_schema`
build it once afterwards (pgvector builds an index far faster than it inserts into one).
"""

import numpy as np
import psycopg
import psycopg.conninfo
from pgvector.psycopg import register_vector_async
from psycopg.types.json import Jsonb

from .db import COPY_COLUMNS, COPY_TYPES, HNSW_INDEX, TABLE, ChunkStore, copy_rows

__all__ = [
    "COPY_COLUMNS",
    "COPY_TYPES",
    "bulk_load",
    "clustered_unit_vectors",
    "copy_rows",
    "random_centers",
    "with_options",
]


def clustered_unit_vectors(
    count: int, dimension: int, rng: np.random.Generator, centers: np.ndarray, spread: float = 1.0
) -> np.ndarray:
    """Unit vectors scattered around `centers`, shaped like sentence embeddings: topics, not noise.

    Uniform random vectors in 384 dimensions have no neighbourhood structure at all and
    say nothing about an index's behaviour on real text embeddings. With `spread` 1 the
    noise is as long as the topic vector, so topics overlap and neighbours are not trivial.
    """
    picks = centers[rng.integers(0, len(centers), count)]
    points = picks + rng.normal(0.0, spread / np.sqrt(dimension), (count, dimension)).astype(np.float32)
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def random_centers(count: int, dimension: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.normal(size=(count, dimension)).astype(np.float32)
    return centers / np.linalg.norm(centers, axis=1, keepdims=True)


async def bulk_load(
    conninfo: str,
    store: ChunkStore,
    tenant: str,
    collection: str,
    vectors: np.ndarray,
    *,
    first_id: int = 0,
) -> None:
    """Loads one chunk per vector (source id = its row number) and rebuilds the HNSW index once.

    The index build gets a large maintenance_work_mem for its session only, so the graph
    is built in memory instead of spilling to disk.
    """
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await register_vector_async(conn)
        await conn.execute(f"DROP INDEX IF EXISTS {HNSW_INDEX}")
        async with conn.cursor() as cursor:
            await copy_rows(
                cursor,
                (
                    (tenant, collection, str(i), 0, f"chunk {i}", Jsonb({}), i.to_bytes(8, "big"), v)
                    for i, v in enumerate(vectors, first_id)
                ),
            )
    await store.create_schema(with_options(conninfo, "-c maintenance_work_mem=512MB"), vectors.shape[1])
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        # Fresh statistics, or the planner guesses a few rows and sorts them instead of using the index.
        await conn.execute(f"ANALYZE {TABLE}")


def with_options(conninfo: str, options: str) -> str:
    """`conninfo` with server `options` added to any it already has (e.g. a search_path)."""
    current = psycopg.conninfo.conninfo_to_dict(conninfo).get("options") or ""
    return psycopg.conninfo.make_conninfo(conninfo, options=f"{current} {options}".strip())
