import asyncio
import logging
from pathlib import Path

import grpc
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.embedded_postgres import EmbeddedPostgres
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from .batching import MicroBatcher
from .cache import CacheMetrics, RetrievalCache
from .db import ChunkStore
from .embedder import Embedder, packaged_model_dir
from .remote_embedder import RemoteEmbedder
from .retriever import Retriever
from .servicer import RetrievalServicer
from .settings import RetrievalSettings
from .sources import SourceConfig, SourceFetcher
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


def source_config(settings: RetrievalSettings) -> SourceConfig:
    roots = tuple(Path(r.strip()).resolve() for r in settings.retrieval_file_roots.split(",") if r.strip())
    return SourceConfig(
        s3_endpoint_url=settings.retrieval_s3_endpoint_url,
        s3_region=settings.retrieval_s3_region,
        file_roots=roots,
        max_bytes=settings.retrieval_max_source_bytes,
    )


class RetrievalApp:
    service_names = (retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"].full_name,)
    # Service tokens must be issued for this name (call_auth, service_tokens).
    audience = "retrieval"

    def __init__(self, settings: RetrievalSettings, registry: CollectorRegistry = REGISTRY) -> None:
        self._settings = settings
        self._store = ChunkStore(
            min_size=settings.retrieval_pool_min_size,
            max_size=settings.retrieval_pool_max_size,
            pool_timeout=settings.retrieval_pool_timeout_seconds,
            hnsw_m=settings.retrieval_hnsw_m,
            hnsw_ef_construction=settings.retrieval_hnsw_ef_construction,
        )
        self._local: Embedder | None = None
        self._remote: RemoteEmbedder | None = None
        if settings.retrieval_embedding_url:
            self._remote = RemoteEmbedder(
                base_url=settings.retrieval_embedding_url,
                model=settings.retrieval_embedding_remote_model,
                api_key=settings.retrieval_embedding_api_key.get_secret_value(),
                max_tokens=settings.retrieval_embedding_remote_max_tokens,
                batch_size=settings.retrieval_embedding_batch_size,
            )
        else:
            self._local = Embedder.from_settings(settings)
        self._runtime_info = Gauge(
            "llmsuite_retrieval_embedding_runtime",
            "1 for what embeds queries and chunks: runtime (onnx, onnx-int8, torch, remote; +torch-bf16 "
            "when large batches run in bfloat16) and model.",
            ["runtime", "model"],
            registry=registry,
        )
        self._embedder = MicroBatcher(
            self._remote or self._local,  # type: ignore[arg-type]
            batch_size=settings.retrieval_embedding_batch_size,
            max_wait=settings.retrieval_embedding_max_wait_ms / 1000,
            max_queued=settings.retrieval_embedding_max_queued,
            query_batch_size=settings.retrieval_search_batch_size,
        )
        self._postgres = (
            None
            if settings.retrieval_database_url.get_secret_value()
            else EmbeddedPostgres(settings.retrieval_pgserver_data_dir)
        )
        cache = RetrievalCache(
            ttl_seconds=settings.retrieval_cache_ttl_seconds,
            max_embeddings=settings.retrieval_cache_max_embeddings,
            max_results=settings.retrieval_cache_max_results,
            metrics=CacheMetrics(registry),
        )
        self.retriever = Retriever(
            self._store,
            self._embedder,
            chunk_tokens=settings.retrieval_chunk_tokens,
            overlap_tokens=settings.retrieval_chunk_overlap_tokens,
            max_chunks_per_request=settings.retrieval_max_chunks_per_request,
            ef_search=settings.retrieval_hnsw_ef_search,
            cache=cache,
            embedding_piece=settings.retrieval_embedding_batch_size,
        )
        self._servicer = RetrievalServicer(
            self.retriever,
            limits(settings),
            default_timeout=settings.retrieval_default_timeout_seconds,
            fetcher=SourceFetcher(source_config(settings)),
            max_source_bytes=settings.retrieval_max_source_bytes,
            ingest_concurrency=settings.retrieval_ingest_concurrency,
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        # Database and model start side by side; each takes seconds on a small machine.
        conninfo, _ = await asyncio.gather(self._start_database(), self._load_model())
        await self._store.open(
            conninfo,
            dimension=self._embedder.dimension,
            create_schema=self._settings.retrieval_database_migrate_on_start,
        )

    async def migrate(self) -> None:
        """Creates the schema, or what of it is missing (a vector index a bulk load dropped), and
        stops: `python -m retrieval_service.migrate`. The model is loaded for its dimension."""
        try:
            conninfo, _ = await asyncio.gather(self._start_database(), self._load_model())
            await self._store.create_schema(conninfo, self._embedder.dimension)
        finally:
            await self.stop()

    async def _start_database(self) -> str:
        if self._postgres is None:
            return self._settings.retrieval_database_url.get_secret_value()
        return await asyncio.to_thread(self._postgres.start)

    async def _load_model(self) -> None:
        if self._remote is not None:
            await self._remote.load()
            self._runtime_info.labels("remote", self._remote.name).set(1)
            return
        assert self._local is not None
        configured = self._settings.retrieval_embedding_model_dir
        model_dir = (
            Path(configured)
            if configured
            else await asyncio.to_thread(packaged_model_dir, self._settings.retrieval_model_cache_dir)
        )
        await self._local.load(model_dir)
        self._runtime_info.labels(self._local.runtime, self._local.name).set(1)
        if self._local.max_tokens < self._settings.retrieval_chunk_tokens:
            logging.getLogger(__name__).warning(
                "chunks capped at the embedding model's window",
                extra={
                    "configured": self._settings.retrieval_chunk_tokens,
                    "used": self._local.max_tokens,
                },
            )

    async def stop(self) -> None:
        try:
            await self._store.close()
            await self._embedder.close()
        finally:
            if self._postgres is not None:
                await asyncio.to_thread(self._postgres.release)
