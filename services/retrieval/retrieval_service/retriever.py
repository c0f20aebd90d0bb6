"""Ingest and search: chunking, embedding and storage put together, free of gRPC."""

import asyncio
import hashlib
from dataclasses import dataclass

import numpy as np

from llmsuite_common.errors import InvalidArgument

from .chunking import chunk_text
from .db import ChunkStore, Hit, NewChunk, NewDocument
from .embedder import Embedder
from .validation import DocumentInput


@dataclass(frozen=True, slots=True)
class IngestResult:
    documents: int
    chunks: int
    embedded: int


class Retriever:
    def __init__(
        self,
        store: ChunkStore,
        embedder: Embedder,
        *,
        chunk_tokens: int,
        overlap_tokens: int,
        max_chunks_per_request: int,
        ef_search: int,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._chunk_tokens = chunk_tokens
        self._overlap_tokens = overlap_tokens
        self._max_chunks = max_chunks_per_request
        self._ef_search = ef_search

    async def ingest(
        self, tenant: str, collection: str, documents: list[DocumentInput], *, deadline: float
    ) -> IngestResult:
        # Tokenizing a large document takes long enough to stall other calls on the loop.
        pieces = await asyncio.to_thread(self._chunk_all, documents)
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
            [d.source_id for d in documents],
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
        if missing:
            vectors = await self._embedder.embed([t for _, t in missing], deadline=deadline)
            known.update((h, v) for (h, _), v in zip(missing, vectors, strict=True))
        new_documents = [
            NewDocument(
                doc.source_id,
                doc.metadata,
                [NewChunk(i, t, h, known[h]) for i, (t, h) in enumerate(zip(texts, hs, strict=True))],
            )
            for doc, texts, hs in zip(documents, pieces, hashes, strict=True)
        ]
        await self._store.replace_documents(tenant, collection, new_documents, timeout=_remaining(deadline))
        return IngestResult(len(documents), total, len(missing))

    async def search(self, tenant: str, collection: str, query: str, k: int, *, deadline: float) -> list[Hit]:
        vector: np.ndarray = (await self._embedder.embed([query], deadline=deadline))[0]
        return await self._store.search(
            tenant, collection, vector, k=k, ef_search=self._ef_search, timeout=_remaining(deadline)
        )

    def _chunk_all(self, documents: list[DocumentInput]) -> list[list[str]]:
        # Text past the model's window would be cut off unseen, so the window caps the size.
        max_tokens = min(self._chunk_tokens, self._embedder.max_tokens)
        overlap = min(self._overlap_tokens, max_tokens // 2)
        return [
            chunk_text(
                d.text,
                max_tokens=max_tokens,
                overlap_tokens=overlap,
                count_tokens=self._embedder.count_tokens,
            )
            for d in documents
        ]


def _remaining(deadline: float) -> float:
    return deadline - asyncio.get_running_loop().time()
