import asyncio
import logging

import grpc
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

from . import validation
from .retriever import Retriever
from .validation import Limits

log = logging.getLogger(__name__)


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, retriever: Retriever, limits: Limits, *, default_timeout: float) -> None:
        self._retriever = retriever
        self._limits = limits
        self._default_timeout = default_timeout

    async def Ingest(
        self, request: retrieval_pb2.IngestRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.IngestResponse:
        tenant = validation.tenant(request.context.org_id)
        collection = validation.collection(request.collection)
        documents = validation.documents(
            ((d.id, d.text, d.metadata) for d in request.documents), self._limits
        )
        result = await self._retriever.ingest(tenant, collection, documents, deadline=self._deadline(context))
        log.info(
            "ingested",
            extra={"documents": result.documents, "chunks": result.chunks, "embedded": result.embedded},
        )
        return retrieval_pb2.IngestResponse(documents=result.documents, chunks=result.chunks)

    async def Search(
        self, request: retrieval_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        tenant = validation.tenant(request.context.org_id)
        collection = validation.collection(request.collection)
        query = validation.query(request.query, self._limits)
        k = validation.k(request.k, self._limits)
        hits = await self._retriever.search(tenant, collection, query, k, deadline=self._deadline(context))
        return retrieval_pb2.SearchResponse(
            chunks=[
                retrieval_pb2.Chunk(
                    chunk_id=h.chunk_id,
                    source_id=h.source_id,
                    text=h.text,
                    score=h.score,
                    ordinal=h.ordinal,
                    metadata=h.metadata,
                )
                for h in hits
            ]
        )

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        """The caller's deadline on the loop clock, or the default budget when it set none."""
        remaining = context.time_remaining()
        return asyncio.get_running_loop().time() + (self._default_timeout if remaining is None else remaining)
