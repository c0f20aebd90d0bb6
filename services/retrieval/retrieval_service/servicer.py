import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC

import grpc
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import InvalidArgument, NotFound, ServiceError, error_detail

from . import access, parsing, validation
from .db import CollectionInfo, Hit
from .retriever import Retriever, SearchQuery
from .sources import SourceFetcher
from .validation import Limits

log = logging.getLogger(__name__)

Progress = retrieval_pb2.IngestProgress


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(
        self,
        retriever: Retriever,
        limits: Limits,
        *,
        default_timeout: float,
        fetcher: SourceFetcher | None = None,
        max_source_bytes: int = 32 * 1024 * 1024,
        ingest_concurrency: int = 4,
    ) -> None:
        self._retriever = retriever
        self._limits = limits
        self._default_timeout = default_timeout
        self._fetcher = fetcher
        self._max_source_bytes = max_source_bytes
        self._concurrency = ingest_concurrency

    async def Ingest(
        self, request: retrieval_pb2.IngestRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.IngestResponse:
        # Ingesting replaces documents of the same id: what others stored is overwritten.
        caller, tenant = access.authorize(request.context, access.ADMIN)
        collection = validation.collection(request.collection)
        caller.require_collection(collection)
        documents = validation.documents(
            ((d.id, d.text, d.metadata) for d in request.documents), self._limits
        )
        result = await self._retriever.ingest(tenant, collection, documents, deadline=self._deadline(context))
        log.info(
            "ingested",
            extra={
                "documents": result.documents,
                "chunks": result.chunks,
                "embedded": result.embedded,
                "unchanged": result.unchanged,
            },
        )
        return retrieval_pb2.IngestResponse(
            documents=result.documents, chunks=result.chunks, unchanged=result.unchanged
        )

    async def Search(
        self, request: retrieval_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.SearchResponse:
        caller, tenant = access.authorize(request.context, access.READ)
        collection = validation.collection(request.collection)
        caller.require_collection(collection)
        weight = validation.hybrid_weight(request.hybrid_weight)
        vector = validation.search_vector(request.vector, self._retriever.embedder.dimension)
        query = validation.search_text(
            request.query, vector_given=vector is not None, hybrid=weight > 0, limits=self._limits
        )
        k = validation.k(request.k, self._limits)
        where = validation.metadata_filter(request.filter, self._limits)
        found = await self._retriever.find(
            tenant, collection, SearchQuery(query, vector, k, where, weight), deadline=self._deadline(context)
        )
        return retrieval_pb2.SearchResponse(
            chunks=[_chunk(h) for h in found.hits], cached=found.cached, collection_version=found.version
        )

    async def CreateCollection(
        self, request: retrieval_pb2.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.CreateCollectionResponse:
        caller, tenant = access.authorize(request.context, access.WRITE)
        name = validation.collection(request.name, param="name")
        caller.require_collection(name, param="name")
        description = validation.description(request.description)
        info, created = await self._retriever.create_collection(
            tenant, name, description, deadline=self._deadline(context)
        )
        return retrieval_pb2.CreateCollectionResponse(collection=_collection(info), created=created)

    async def ListCollections(
        self, request: retrieval_pb2.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.ListCollectionsResponse:
        caller, tenant = access.authorize(request.context, access.READ)
        found = await self._retriever.list_collections(tenant, deadline=self._deadline(context))
        return retrieval_pb2.ListCollectionsResponse(
            collections=[_collection(c) for c in found if caller.may_use_collection(c.name)]
        )

    async def DeleteCollection(
        self, request: retrieval_pb2.DeleteCollectionRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.DeleteCollectionResponse:
        caller, tenant = access.authorize(request.context, access.ADMIN)
        name = validation.collection(request.name, param="name")
        caller.require_collection(name, param="name")
        deleted = await self._retriever.delete_collection(tenant, name, deadline=self._deadline(context))
        log.info("collection deleted", extra={"documents": deleted.documents, "chunks": deleted.chunks})
        return retrieval_pb2.DeleteCollectionResponse(documents=deleted.documents, chunks=deleted.chunks)

    async def DeleteDocuments(
        self, request: retrieval_pb2.DeleteDocumentsRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.DeleteDocumentsResponse:
        caller, tenant = access.authorize(request.context, access.ADMIN)
        collection = validation.collection(request.collection)
        caller.require_collection(collection)
        ids = validation.source_ids(request.ids, self._limits)
        deleted = await self._retriever.delete_documents(
            tenant, collection, ids, deadline=self._deadline(context)
        )
        return retrieval_pb2.DeleteDocumentsResponse(documents=deleted.documents, chunks=deleted.chunks)

    async def GetChunk(
        self, request: retrieval_pb2.GetChunkRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.GetChunkResponse:
        caller, tenant = access.authorize(request.context, access.READ)
        chunk_id = validation.chunk_id(request.chunk_id)
        collection, hit = await self._retriever.get_chunk(tenant, chunk_id, deadline=self._deadline(context))
        if not caller.may_use_collection(collection):
            # As if absent: a chunk id must not reveal what another team's collections hold.
            raise NotFound("no such chunk", param="chunk_id")
        return retrieval_pb2.GetChunkResponse(chunk=_chunk(hit), collection=collection)

    async def Embed(
        self, request: retrieval_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.EmbedResponse:
        access.authorize(request.context, access.READ)
        if request.model and request.model != self._retriever.embedder.name:
            raise NotFound(
                f"this service embeds with {self._retriever.embedder.name} only",
                code="model_not_found",
                param="model",
            )
        texts = validation.embed_inputs(request.inputs, self._limits)
        vectors, tokens = await self._retriever.embed(texts, deadline=self._deadline(context))
        return retrieval_pb2.EmbedResponse(
            embeddings=[retrieval_pb2.Embedding(values=v.tolist()) for v in vectors],
            model=self._retriever.embedder.name,
            tokens=tokens,
        )

    async def IngestStream(
        self,
        request_iterator: AsyncIterator[retrieval_pb2.IngestStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[Progress]:
        # A stream can run for a long time: without a caller deadline each document gets the default budget.
        deadline = None if context.time_remaining() is None else self._deadline(context)
        target: tuple[str, str] | None = None
        running: set[asyncio.Task[Progress]] = set()
        received = done = 0
        try:
            async for message in request_iterator:
                target = _stream_target(message, target)
                for source in message.sources:
                    received += 1
                    running.add(
                        asyncio.create_task(self._ingest_source(*target, source, received - 1, deadline))
                    )
                    while len(running) >= self._concurrency:
                        finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                        for task in finished:
                            done += 1
                            yield _progress(task.result(), done, received)
            if target is None:
                raise InvalidArgument("the stream carried no message", param="context.org_id")
            while running:
                finished, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    done += 1
                    yield _progress(task.result(), done, received)
        finally:
            for task in running:
                task.cancel()
        log.info("stream ingested", extra={"documents": done})

    async def _ingest_source(
        self, tenant: str, collection: str, source: retrieval_pb2.Source, index: int, deadline: float | None
    ) -> Progress:
        if deadline is None:
            deadline = asyncio.get_running_loop().time() + self._default_timeout
        param = f"sources[{index}]"
        source_id = source.id or source.uri
        try:
            document = await self._document(source, param, deadline)
            result = await self._retriever.ingest(tenant, collection, [document], deadline=deadline)
        except ServiceError as exc:
            detail = error_detail(exc)
            if detail.param and not detail.param.startswith("sources["):
                detail.param = f"{param}.{detail.param}"
            return Progress(source_id=source_id, status=Progress.FAILED, error=detail)
        except Exception:  # noqa: BLE001 - one document's fault must not end the others' stream
            log.exception("document ingest failed", extra={"source": param})
            detail = error_detail(ServiceError("the document could not be ingested", param=param))
            return Progress(source_id=source_id, status=Progress.FAILED, error=detail)
        status = Progress.UNCHANGED if result.unchanged else Progress.INDEXED
        return Progress(source_id=source_id, status=status, chunks=result.chunks)

    async def _document(
        self, source: retrieval_pb2.Source, param: str, deadline: float
    ) -> validation.DocumentInput:
        which = source.WhichOneof("content")
        if which == "uri":
            if self._fetcher is None:
                raise InvalidArgument("this service does not fetch URIs", param="uri")
            remaining = deadline - asyncio.get_running_loop().time()
            data = await self._fetcher.fetch(source.uri, timeout=remaining)
        elif which == "data":
            data = source.data
        elif which == "text":
            # The caller's own text: a NUL in it is refused, not cleaned as in extracted text.
            data = validation.inline_text(source.text, param).encode("utf-8", "surrogatepass")
        else:
            raise InvalidArgument(f"{param} needs text, data or uri", param=param)
        if len(data) > self._max_source_bytes:
            raise InvalidArgument(f"{param} is larger than {self._max_source_bytes} bytes", param=param)
        kind = parsing.content_type(source.content_type, source.uri or source.id, data)
        if which == "text" and kind == parsing.PDF:
            kind = parsing.PLAIN  # text already extracted, whatever its id's extension says
        text = await asyncio.to_thread(parsing.extract_text, data, kind)
        return validation.document(source.id or source.uri, text, source.metadata, self._limits, param)

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        """The caller's deadline on the loop clock, or the default budget when it set none."""
        remaining = context.time_remaining()
        return asyncio.get_running_loop().time() + (self._default_timeout if remaining is None else remaining)


def _stream_target(
    message: retrieval_pb2.IngestStreamRequest, known: tuple[str, str] | None
) -> tuple[str, str]:
    if known is None:
        caller, tenant = access.authorize(message.context, access.ADMIN)
        collection = validation.collection(message.collection)
        caller.require_collection(collection)
        return tenant, collection
    if message.context.org_id and message.context.org_id != known[0]:
        raise InvalidArgument("context.org_id changed within the stream", param="context.org_id")
    if message.collection and message.collection != known[1]:
        raise InvalidArgument("collection changed within the stream", param="collection")
    return known


def _progress(result: Progress, done: int, received: int) -> Progress:
    result.done, result.received = done, received
    return result


def _chunk(h: Hit) -> retrieval_pb2.Chunk:
    return retrieval_pb2.Chunk(
        chunk_id=h.chunk_id,
        source_id=h.source_id,
        text=h.text,
        score=h.score,
        ordinal=h.ordinal,
        metadata=h.metadata,
        fused_score=h.fused_score,
    )


def _collection(c: CollectionInfo) -> retrieval_pb2.Collection:
    return retrieval_pb2.Collection(
        name=c.name,
        description=c.description,
        documents=c.documents,
        chunks=c.chunks,
        created_at=c.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    )
