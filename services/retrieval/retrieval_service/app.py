import asyncio
import logging
from pathlib import Path

import grpc
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

from .db import ChunkStore
from .embedded_postgres import EmbeddedPostgres
from .embedder import Embedder, packaged_model_dir
from .retriever import Retriever
from .servicer import RetrievalServicer
from .settings import RetrievalSettings
from .validation import Limits


def limits(settings: RetrievalSettings) -> Limits:
    return Limits(
        max_documents=settings.retrieval_max_documents,
        max_document_bytes=settings.retrieval_max_document_bytes,
        max_metadata_entries=settings.retrieval_max_metadata_entries,
        max_metadata_value_bytes=settings.retrieval_max_metadata_value_bytes,
        max_query_bytes=settings.retrieval_max_query_bytes,
        default_k=settings.retrieval_default_k,
        max_k=settings.retrieval_max_k,
    )


class RetrievalApp:
    service_names = (retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name,)

    def __init__(self, settings: RetrievalSettings) -> None:
        self._settings = settings
        self._store = ChunkStore(
            min_size=settings.retrieval_pool_min_size,
            max_size=settings.retrieval_pool_max_size,
            pool_timeout=settings.retrieval_pool_timeout_seconds,
            hnsw_m=settings.retrieval_hnsw_m,
            hnsw_ef_construction=settings.retrieval_hnsw_ef_construction,
        )
        self._embedder = Embedder(
            batch_size=settings.retrieval_embedding_batch_size,
            torch_threads=settings.retrieval_torch_threads,
        )
        self._postgres = (
            None
            if settings.retrieval_database_url.get_secret_value()
            else EmbeddedPostgres(settings.retrieval_pgserver_data_dir)
        )
        retriever = Retriever(
            self._store,
            self._embedder,
            chunk_tokens=settings.retrieval_chunk_tokens,
            overlap_tokens=settings.retrieval_chunk_overlap_tokens,
            max_chunks_per_request=settings.retrieval_max_chunks_per_request,
            ef_search=settings.retrieval_hnsw_ef_search,
        )
        self._servicer = RetrievalServicer(
            retriever, limits(settings), default_timeout=settings.retrieval_default_timeout_seconds
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        # Database and model start side by side; each takes seconds on a small machine.
        conninfo, _ = await asyncio.gather(self._start_database(), self._load_model())
        await self._store.open(conninfo, dimension=self._embedder.dimension)

    async def _start_database(self) -> str:
        if self._postgres is None:
            return self._settings.retrieval_database_url.get_secret_value()
        return await asyncio.to_thread(self._postgres.start)

    async def _load_model(self) -> None:
        configured = self._settings.retrieval_embedding_model_dir
        model_dir = (
            Path(configured)
            if configured
            else await asyncio.to_thread(packaged_model_dir, self._settings.retrieval_model_cache_dir)
        )
        await self._embedder.load(model_dir)
        if self._embedder.max_tokens < self._settings.retrieval_chunk_tokens:
            logging.getLogger(__name__).warning(
                "chunks capped at the embedding model's window",
                extra={
                    "configured": self._settings.retrieval_chunk_tokens,
                    "used": self._embedder.max_tokens,
                },
            )

    async def stop(self) -> None:
        try:
            await self._store.close()
            await self._embedder.close()
        finally:
            if self._postgres is not None:
                await asyncio.to_thread(self._postgres.release)
