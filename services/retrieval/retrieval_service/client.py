"""A small asyncio client for services that call retrieval over gRPC.

    tokens = GatewayTokens("http://gateway:8080", api_key=os.environ["LLMSUITE_API_KEY"])
    async with RetrievalClient("dns:///retrieval:50062", credentials=tokens) as rc:
        await rc.create_collection("handbook")
        async for p in rc.ingest("handbook", [Source(uri="s3://docs/handbook.pdf")]):
            print(p.source_id, p.status, p.done, p.received)
        hits = await rc.search("handbook", "how many days of leave?", k=5, filter={"team": "hr"})

Every call carries the credential's service token (the tenant is the one it names), a request
id and a deadline; failures stay grpc.aio.AioRpcError (`llmsuite_common.errors.read_error_detail`
gives their code, message and field). With `tls_ca_file` the channel is TLS, and with a client
certificate mutual TLS.
"""

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.call_auth import CallCredentials
from llmsuite_common.grpc_client import TracedStub, call_metadata, channel
from llmsuite_common.grpc_tls import channel_credentials

from .credentials import GatewayTokens, StaticCredentials

Source = retrieval_pb2.Source
Document = retrieval_pb2.Document
Progress = retrieval_pb2.IngestProgress

# A stream message is sent when it holds this many sources or bytes, whichever comes first,
# which keeps it well under gRPC's default 4 MiB message limit unless one file alone is larger.
SOURCES_PER_MESSAGE = 8
BYTES_PER_MESSAGE = 1024 * 1024


__all__ = ["GatewayTokens", "RetrievalClient", "StaticCredentials", "Source", "Document", "Progress"]


class RetrievalClient:
    def __init__(
        self,
        target: str,
        *,
        credentials: CallCredentials,
        user_id: str = "",
        timeout: float = 30.0,
        max_message_bytes: int = 64 * 1024 * 1024,
        tls_ca_file: str = "",
        tls_cert_file: str = "",
        tls_key_file: str = "",
    ) -> None:
        self._target = target
        self._credentials = credentials
        self._user_id = user_id
        self._timeout = timeout
        self._max_message_bytes = max_message_bytes
        self._tls = (tls_ca_file, tls_cert_file, tls_key_file)
        self._channel: grpc.aio.Channel | None = None
        # A TracedStub around the generated stub, used as one.
        self._stub: Any = None

    async def __aenter__(self) -> "RetrievalClient":
        self._channel = channel(
            self._target,
            max_message_bytes=self._max_message_bytes,
            credentials=channel_credentials(*self._tls),
        )
        self._stub = TracedStub(
            retrieval_pb2_grpc.RetrievalServiceStub(self._channel),
            audience="retrieval",
            credentials=self._credentials,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._channel = self._stub = None

    @property
    def stub(self) -> retrieval_pb2_grpc.RetrievalServiceStub:
        if self._stub is None:
            raise RuntimeError("use the client inside 'async with'")
        return self._stub

    def _context(self) -> common_pb2.RequestContext:
        # The organization is the one the token names; the request leaves it empty.
        return common_pb2.RequestContext(user_id=self._user_id)

    async def _ready(self) -> None:
        ready = getattr(self._credentials, "ready", None)
        if ready is not None:
            await ready()

    def _options(self, timeout: float | None) -> dict[str, Any]:
        return {"timeout": timeout or self._timeout, "metadata": call_metadata()}

    async def create_collection(
        self, name: str, description: str = "", *, timeout: float | None = None
    ) -> retrieval_pb2.CreateCollectionResponse:
        await self._ready()
        return await self.stub.CreateCollection(
            retrieval_pb2.CreateCollectionRequest(
                context=self._context(), name=name, description=description
            ),
            **self._options(timeout),
        )

    async def list_collections(self, *, timeout: float | None = None) -> list[retrieval_pb2.Collection]:
        await self._ready()
        reply = await self.stub.ListCollections(
            retrieval_pb2.ListCollectionsRequest(context=self._context()), **self._options(timeout)
        )
        return list(reply.collections)

    async def delete_collection(
        self, name: str, *, timeout: float | None = None
    ) -> retrieval_pb2.DeleteCollectionResponse:
        await self._ready()
        return await self.stub.DeleteCollection(
            retrieval_pb2.DeleteCollectionRequest(context=self._context(), name=name),
            **self._options(timeout),
        )

    async def ingest(
        self, collection: str, sources: Iterable[retrieval_pb2.Source], *, timeout: float | None = None
    ) -> AsyncIterator[retrieval_pb2.IngestProgress]:
        """Streams `sources` in and yields one progress message per document as each finishes."""
        await self._ready()
        context = self._context()

        async def requests() -> AsyncIterator[retrieval_pb2.IngestStreamRequest]:
            batch: list[retrieval_pb2.Source] = []
            size, first = 0, True
            for source in sources:
                if batch and (
                    len(batch) == SOURCES_PER_MESSAGE or size + source.ByteSize() > BYTES_PER_MESSAGE
                ):
                    yield _stream_message(context, collection, batch, first)
                    batch, size, first = [], 0, False
                batch.append(source)
                size += source.ByteSize()
            if batch or first:
                yield _stream_message(context, collection, batch, first)

        async for progress in self.stub.IngestStream(requests(), **self._options(timeout)):
            yield progress

    async def ingest_texts(
        self,
        collection: str,
        texts: Mapping[str, str],
        metadata: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,
    ) -> retrieval_pb2.IngestResponse:
        """Plain texts by document id, in one call."""
        await self._ready()
        return await self.stub.Ingest(
            retrieval_pb2.IngestRequest(
                context=self._context(),
                collection=collection,
                documents=[Document(id=i, text=t, metadata=metadata or {}) for i, t in texts.items()],
            ),
            **self._options(timeout),
        )

    async def delete_documents(
        self, collection: str, ids: Sequence[str], *, timeout: float | None = None
    ) -> retrieval_pb2.DeleteDocumentsResponse:
        await self._ready()
        return await self.stub.DeleteDocuments(
            retrieval_pb2.DeleteDocumentsRequest(
                context=self._context(), collection=collection, ids=list(ids)
            ),
            **self._options(timeout),
        )

    async def search(
        self,
        collection: str,
        query: str = "",
        *,
        k: int = 0,
        vector: Sequence[float] | None = None,
        filter: Mapping[str, str] | None = None,
        hybrid_weight: float = 0.0,
        timeout: float | None = None,
    ) -> retrieval_pb2.SearchResponse:
        await self._ready()
        return await self.stub.Search(
            retrieval_pb2.SearchRequest(
                context=self._context(),
                collection=collection,
                query=query,
                k=k,
                vector=list(vector or []),
                filter=dict(filter or {}),
                hybrid_weight=hybrid_weight,
            ),
            **self._options(timeout),
        )

    async def get_chunk(
        self, chunk_id: str, *, timeout: float | None = None
    ) -> retrieval_pb2.GetChunkResponse:
        await self._ready()
        return await self.stub.GetChunk(
            retrieval_pb2.GetChunkRequest(context=self._context(), chunk_id=chunk_id),
            **self._options(timeout),
        )

    async def embed(self, texts: Sequence[str], *, timeout: float | None = None) -> list[list[float]]:
        await self._ready()
        reply = await self.stub.Embed(
            retrieval_pb2.EmbedRequest(context=self._context(), inputs=list(texts)), **self._options(timeout)
        )
        return [list(e.values) for e in reply.embeddings]


def _stream_message(
    context: common_pb2.RequestContext, collection: str, sources: list[retrieval_pb2.Source], first: bool
) -> retrieval_pb2.IngestStreamRequest:
    if first:
        return retrieval_pb2.IngestStreamRequest(context=context, collection=collection, sources=sources)
    return retrieval_pb2.IngestStreamRequest(sources=sources)
