"""Ingest and search: chunking, embedding, caching and storage put together, free of gRPC."""

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import orjson
from llmsuite_common.errors import InvalidArgument

from .cache import RetrievalCache, results_key
from .chunking import chunk_text
from .db import ChunkStore, CollectionInfo, Deleted, DocumentRecord, Hit, Hits, NewChunk, NewDocument
from .embedder import EmbeddingModel
from .validation import DocumentInput


@dataclass(frozen=True, slots=True)
class IngestResult:
    documents: int
    chunks: int
    embedded: int
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class SearchQuery:
    query: str
    vector: np.ndarray | None
    k: int
    filter: Mapping[str, str]
    hybrid_weight: float


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    cached: bool
    # The collection's version the hits were found at (db.collection_version).
    version: str = ""


class Retriever:
    def __init__(
        self,
        store: ChunkStore,
        embedder: EmbeddingModel,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        max_chunks_per_request: int,
        ef_search: int,
        cache: RetrievalCache | None = None,
        embedding_piece: int = 32,
    ) -> None:
        self._store = store
        self._embedder = embedder
        # Texts per embedding call of a pipelined ingest (the embedder's batch); one such ingest
        # at a time, as it holds a database connection and its collection's lock while it embeds.
        self._piece = embedding_piece
        self._pipelined = asyncio.Semaphore(1)
        self._chunk_tokens = chunk_tokens
        self._overlap_tokens = overlap_tokens
        self._max_chunks = max_chunks_per_request
        self._ef_search = ef_search
        self._cache = cache

    @property
    def embedder(self) -> EmbeddingModel:
        return self._embedder

    @property
    def store(self) -> ChunkStore:
        return self._store

    async def ingest(
        self, tenant: str, collection: str, documents: list[DocumentInput], *, deadline: float
    ) -> IngestResult:
        digests = {d.source_id: self._document_hash(d) for d in documents}
        unchanged = await self._store.unchanged_documents(
            tenant, collection, digests, timeout=_remaining(deadline)
        )
        todo = [d for d in documents if d.source_id not in unchanged]
        if not todo:
            return IngestResult(len(documents), sum(unchanged.values()), 0, len(documents))
        # Tokenizing a large document takes long enough to stall other calls on the loop.
        pieces = await asyncio.to_thread(self._chunk_all, todo)
        total = sum(len(p) for p in pieces)
        if total > self._max_chunks:
            raise InvalidArgument(
                f"the documents make {total} chunks; at most {self._max_chunks} per request",
                param="documents",
            )
        hashes = [[hashlib.sha256(t.encode()).digest() for t in texts] for texts in pieces]
        known = await self._store.known_embeddings(
            tenant,
            collection,
            [d.source_id for d in todo],
            [h for hs in hashes for h in hs],
            timeout=_remaining(deadline),
        )
        missing = sorted(
            {
                h: t
                for hs, ts in zip(hashes, pieces, strict=True)
                for h, t in zip(hs, ts, strict=True)
                if h not in known
            }.items()
        )
        result = IngestResult(len(documents), total + sum(unchanged.values()), len(missing), len(unchanged))
        if len(missing) > self._piece and not self._pipelined.locked():
            async with self._pipelined:
                await self._embed_while_writing(
                    tenant, collection, todo, pieces, hashes, digests, known, missing, deadline
                )
            return result
        if missing:
            vectors = await self._embedder.embed([t for _, t in missing], deadline=deadline)
            known.update((h, v) for (h, _), v in zip(missing, vectors, strict=True))
        new_documents = [
            NewDocument(
                doc.source_id,
                doc.metadata,
                [NewChunk(i, t, h, known[h]) for i, (t, h) in enumerate(zip(texts, hs, strict=True))],
                digests[doc.source_id],
            )
            for doc, texts, hs in zip(todo, pieces, hashes, strict=True)
        ]
        await self._store.replace_documents(tenant, collection, new_documents, timeout=_remaining(deadline))
        return result

    async def _embed_while_writing(
        self,
        tenant: str,
        collection: str,
        todo: list[DocumentInput],
        pieces: list[list[str]],
        hashes: list[list[bytes]],
        digests: dict[str, bytes],
        known: dict[bytes, np.ndarray],
        missing: list[tuple[bytes, str]],
        deadline: float,
    ) -> None:
        """An ingest whose chunks take several embedding calls: each part's rows are written while
        the next part embeds, in the one transaction that replaces the documents (the database's
        share of an ingest, most of it the HNSW index, was a fifth of its time, the model idle)."""
        records = [
            DocumentRecord(doc.source_id, digests[doc.source_id], len(texts))
            for doc, texts in zip(todo, pieces, strict=True)
        ]
        # Where each chunk text goes: (document, ordinal) for every chunk with that hash.
        places: dict[bytes, list[tuple[int, int]]] = {}
        for d, hs in enumerate(hashes):
            for ordinal, h in enumerate(hs):
                places.setdefault(h, []).append((d, ordinal))

        def rows(found: dict[bytes, np.ndarray]) -> list[NewDocument]:
            chunks: dict[int, list[NewChunk]] = {}
            for h, vector in found.items():
                for d, ordinal in places.get(h, ()):
                    chunks.setdefault(d, []).append(NewChunk(ordinal, pieces[d][ordinal], h, vector))
            return [
                NewDocument(todo[d].source_id, todo[d].metadata, c, digests[todo[d].source_id])
                for d, c in chunks.items()
            ]

        parts = [missing[i : i + self._piece] for i in range(0, len(missing), self._piece)]

        def embed(part: list[tuple[bytes, str]]) -> asyncio.Task[np.ndarray]:
            task = asyncio.ensure_future(self._embedder.embed([t for _, t in part], deadline=deadline))
            # A part still embedding when the write fails is cancelled, and its outcome read.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return task

        running = embed(parts[0])
        try:
            async with self._store.replacing_documents(
                tenant, collection, records, timeout=_remaining(deadline)
            ) as writer:
                await writer.add(rows(known))
                for n, part in enumerate(parts):
                    vectors = await running
                    if n + 1 < len(parts):
                        running = embed(parts[n + 1])
                    await writer.add(rows({h: v for (h, _), v in zip(part, vectors, strict=True)}))
        finally:
            running.cancel()

    async def search(self, tenant: str, collection: str, query: str, k: int, *, deadline: float) -> list[Hit]:
        """Nearest chunks to `query` text: the original Search call."""
        found = await self.find(tenant, collection, SearchQuery(query, None, k, {}, 0.0), deadline=deadline)
        return found.hits

    async def find(self, tenant: str, collection: str, q: SearchQuery, *, deadline: float) -> SearchResult:
        """Search with every option, through the result cache."""
        vector = q.vector
        if vector is None and (self._cache is None or self._cache.remembers_embeddings):
            vector = self._cache.embedding(q.query) if self._cache is not None else None
            if vector is None:
                # A query text not seen lately (its embedding is not cached) has no cached results
                # either: one statement finds the hits and reads the collection's version.
                return await self._fresh(tenant, collection, q, deadline)
        version = await self._store.collection_version(tenant, collection, timeout=_remaining(deadline))
        key = None
        if self._cache is not None:
            key = _results_key(tenant, collection, version, q)
            cached = self._cache.results(key)
            if cached is not None:
                return SearchResult(cached, True, version)
        if vector is None:
            vector = await self.query_embedding(q.query, deadline=deadline)
        hits = await self._search(tenant, collection, vector, q, deadline, with_version=False)
        if self._cache is not None and key is not None:
            self._cache.put_results(key, hits)
        return SearchResult(hits, False, version)

    async def _fresh(self, tenant: str, collection: str, q: SearchQuery, deadline: float) -> SearchResult:
        """A query whose embedding is not cached: the model, then hits and version together."""
        vector: np.ndarray = (await self._embedder.embed([q.query], deadline=deadline))[0]
        hits = await self._search(tenant, collection, vector, q, deadline, with_version=True)
        version = hits.version or ""
        if self._cache is not None:
            self._cache.missed_results()
            self._cache.put_embedding(q.query, vector)
            self._cache.put_results(_results_key(tenant, collection, version, q), hits)
        return SearchResult(hits, False, version)

    async def _search(
        self,
        tenant: str,
        collection: str,
        vector: np.ndarray,
        q: SearchQuery,
        deadline: float,
        *,
        with_version: bool,
    ) -> Hits:
        return await self._store.search(
            tenant,
            collection,
            vector,
            k=q.k,
            ef_search=self._ef_search,
            timeout=_remaining(deadline),
            filter=q.filter,
            text_query=q.query,
            hybrid_weight=q.hybrid_weight,
            with_version=with_version,
        )

    async def query_embedding(self, text: str, *, deadline: float) -> np.ndarray:
        if self._cache is not None and (found := self._cache.embedding(text)) is not None:
            return found
        vector: np.ndarray = (await self._embedder.embed([text], deadline=deadline))[0]
        if self._cache is not None:
            self._cache.put_embedding(text, vector)
        return vector

    async def embed(self, texts: list[str], *, deadline: float) -> tuple[np.ndarray, int]:
        """Embeddings for callers, with the tokens the model saw (each text capped at its window)."""
        tokens = sum(min(self._embedder.count_tokens(t), self._embedder.max_tokens) for t in texts)
        return await self._embedder.embed(texts, deadline=deadline), tokens

    async def delete_documents(
        self, tenant: str, collection: str, source_ids: Sequence[str], *, deadline: float
    ) -> Deleted:
        return await self._store.delete_documents(
            tenant, collection, source_ids, timeout=_remaining(deadline)
        )

    async def create_collection(
        self, tenant: str, name: str, description: str, *, deadline: float
    ) -> tuple[CollectionInfo, bool]:
        return await self._store.create_collection(tenant, name, description, timeout=_remaining(deadline))

    async def list_collections(self, tenant: str, *, deadline: float) -> list[CollectionInfo]:
        return await self._store.list_collections(tenant, timeout=_remaining(deadline))

    async def delete_collection(self, tenant: str, name: str, *, deadline: float) -> Deleted:
        return await self._store.delete_collection(tenant, name, timeout=_remaining(deadline))

    async def get_chunk(self, tenant: str, chunk_id: str, *, deadline: float) -> tuple[str, Hit]:
        return await self._store.get_chunk(tenant, chunk_id, timeout=_remaining(deadline))

    def _limits(self) -> tuple[int, int]:
        # Text past the model's window would be cut off unseen, so the window caps the size.
        max_tokens = min(self._chunk_tokens, self._embedder.max_tokens)
        return max_tokens, min(self._overlap_tokens, max_tokens // 2)

    def _document_hash(self, doc: DocumentInput) -> bytes:
        """Changes whenever the stored chunks would: text, metadata, chunking or model."""
        max_tokens, overlap = self._limits()
        return hashlib.sha256(
            orjson.dumps(
                [doc.text, doc.metadata, max_tokens, overlap, self._embedder.name],
                option=orjson.OPT_SORT_KEYS,
            )
        ).digest()

    def _chunk_all(self, documents: list[DocumentInput]) -> list[list[str]]:
        max_tokens, overlap = self._limits()
        return [
            chunk_text(
                d.text,
                max_tokens=max_tokens,
                overlap_tokens=overlap,
                count_tokens=self._embedder.count_tokens,
            )
            for d in documents
        ]


def _results_key(tenant: str, collection: str, version: str, q: SearchQuery) -> tuple[str, str, str, bytes]:
    return results_key(
        tenant,
        collection,
        version,
        query=q.query,
        vector=q.vector,
        k=q.k,
        filter=q.filter,
        hybrid_weight=q.hybrid_weight,
    )


def _remaining(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()
