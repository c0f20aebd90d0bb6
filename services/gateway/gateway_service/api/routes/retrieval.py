"""Collections, documents and search over HTTP, and OpenAI's POST /v1/embeddings, on the retrieval service.

Every route counts against the key's limits and budget and leaves a request-log row (metering.py).
Reading, searching and creating collections is open to every key of the organization; dropping a
collection and adding, replacing or deleting its documents (an ingest replaces documents of the same
id) needs an admin key or the `retrieval:admin` scope.
"""

import base64
import binascii
import struct
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Annotated, Any

import grpc
import orjson
from fastapi import APIRouter, Depends, Request
from google.protobuf.message import Message
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2
from llmsuite_common.request_context import request_id_var
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME
from ...edge.metering import Meter, Metering
from ...edge.scopes import RETRIEVAL_ADMIN, require
from ...edge.tokens import approx_tokens
from ...pipeline.backend_call import backend_call
from ...pipeline.deadline import Deadline
from ..deps import ClientsDep, MeteringDep, SettingsDep
from ..errors import ApiError, from_grpc
from .retrieval_schemas import (
    CreateCollectionBody,
    DeleteDocumentsBody,
    DocumentBody,
    EmbeddingsBody,
    IngestBody,
    SearchBody,
)

_STATUS = {
    retrieval_pb2.IngestProgress.INDEXED: "indexed",
    retrieval_pb2.IngestProgress.UNCHANGED: "unchanged",
    retrieval_pb2.IngestProgress.FAILED: "failed",
}


def _json(body: Any, status: int = 200, meter: Meter | None = None) -> Response:
    headers = meter.headers if meter is not None else None
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


def _context(request: Request) -> common_pb2.RequestContext:
    identity = request.state.identity
    return common_pb2.RequestContext(
        request_id=request_id_var.get(),
        org_id=identity.org_id,
        user_id=getattr(identity, "user_id", ""),
        key_id=identity.key_id,
    )


def _collection(c: retrieval_pb2.Collection) -> dict[str, Any]:
    return {
        "object": "collection",
        "name": c.name,
        "description": c.description,
        "documents": c.documents,
        "chunks": c.chunks,
        "created_at": c.created_at,
    }


def _chunk(c: retrieval_pb2.Chunk) -> dict[str, Any]:
    out = {
        "object": "chunk",
        "chunk_id": c.chunk_id,
        "source_id": c.source_id,
        "ordinal": c.ordinal,
        "text": c.text,
        "score": round(float(c.score), 6),
        "metadata": dict(c.metadata),
    }
    if c.fused_score:
        out["fused_score"] = round(float(c.fused_score), 6)
    return out


def _source(doc: DocumentBody, index: int) -> retrieval_pb2.Source:
    source = retrieval_pb2.Source(id=doc.id, metadata=doc.metadata, content_type=doc.content_type)
    if doc.text is not None:
        source.text = doc.text
    elif doc.uri is not None:
        source.uri = doc.uri
    else:
        try:
            source.data = base64.b64decode(doc.data or "", validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "data is not valid base64", param=f"documents[{index}].data") from None
    return source


@dataclass(frozen=True)
class Retrieval:
    """The retrieval service as these routes call it: each call within the request deadline, each
    request metered (limits, budget, a request-log row)."""

    stub: Any
    timeout_seconds: float
    metering: Metering

    async def call(self, method: Any, message: Message) -> Any:
        return await backend_call(method, message, Deadline(self.timeout_seconds), "retrieval")

    def metered(
        self, request: Request, route: str, *, model: str = "", reserve_tokens: int = 0
    ) -> AbstractAsyncContextManager[Meter]:
        return self.metering.metered(request, route, model=model, reserve_tokens=reserve_tokens)


async def _retrieval(clients: ClientsDep, settings: SettingsDep, metering: MeteringDep) -> Retrieval:
    return Retrieval(clients.retrieval, settings.gateway_request_timeout_seconds, metering)


RetrievalDep = Annotated[Retrieval, Depends(_retrieval)]
router = APIRouter(dependencies=[API_KEY_SCHEME])


@router.post(
    "/v1/collections",
    response_class=Response,
    responses={200: {"description": "The collection existed already"}, 201: {"description": "Created"}},
)
async def create_collection(
    body: CreateCollectionBody, request: Request, retrieval: RetrievalDep
) -> Response:
    async with retrieval.metered(request, "/v1/collections") as meter:
        reply = await retrieval.call(
            retrieval.stub.CreateCollection,
            retrieval_pb2.CreateCollectionRequest(
                context=_context(request), name=body.name, description=body.description
            ),
        )
    return _json(
        {**_collection(reply.collection), "created": reply.created}, 201 if reply.created else 200, meter
    )


@router.get("/v1/collections", response_class=Response)
async def list_collections(request: Request, retrieval: RetrievalDep) -> Response:
    async with retrieval.metered(request, "/v1/collections") as meter:
        reply = await retrieval.call(
            retrieval.stub.ListCollections,
            retrieval_pb2.ListCollectionsRequest(context=_context(request)),
        )
    return _json({"object": "list", "data": [_collection(c) for c in reply.collections]}, meter=meter)


@router.delete("/v1/collections/{name}", response_class=Response)
async def delete_collection(name: str, request: Request, retrieval: RetrievalDep) -> Response:
    require(request.state.identity, RETRIEVAL_ADMIN, "delete collections")
    async with retrieval.metered(request, "/v1/collections/{name}") as meter:
        reply = await retrieval.call(
            retrieval.stub.DeleteCollection,
            retrieval_pb2.DeleteCollectionRequest(context=_context(request), name=name),
        )
    return _json(
        {
            "object": "collection.deleted",
            "name": name,
            "deleted": True,
            "documents": reply.documents,
            "chunks": reply.chunks,
        },
        meter=meter,
    )


@router.post("/v1/collections/{name}/documents", response_class=Response)
async def ingest(name: str, body: IngestBody, request: Request, retrieval: RetrievalDep) -> Response:
    require(request.state.identity, RETRIEVAL_ADMIN, "add or replace documents")
    sources = [_source(d, i) for i, d in enumerate(body.documents)]
    async with retrieval.metered(request, "/v1/collections/{name}/documents") as meter:
        data = await _ingest(name, sources, request, retrieval)
    failed = sum(item["status"] == "failed" for item in data)
    # 200 even when some failed: each document carries its own status and error.
    return _json(
        {
            "object": "list",
            "data": data,
            "documents": len(data) - failed,
            "failed": failed,
            "chunks": sum(item["chunks"] for item in data),
        },
        meter=meter,
    )


async def _ingest(
    name: str, sources: list[retrieval_pb2.Source], request: Request, retrieval: Retrieval
) -> list[dict[str, Any]]:

    async def requests() -> AsyncIterator[retrieval_pb2.IngestStreamRequest]:
        yield retrieval_pb2.IngestStreamRequest(context=_context(request), collection=name, sources=sources)

    results: dict[str, dict[str, Any]] = {}
    try:
        stream = retrieval.stub.IngestStream(
            requests(), timeout=Deadline(retrieval.timeout_seconds).remaining()
        )
        async for progress in stream:
            item: dict[str, Any] = {
                "id": progress.source_id,
                "status": _STATUS.get(progress.status, "unknown"),
                "chunks": progress.chunks,
            }
            if progress.status == retrieval_pb2.IngestProgress.FAILED:
                item["error"] = {
                    "message": progress.error.message,
                    "code": progress.error.code or None,
                    "param": progress.error.param or None,
                }
            results[progress.source_id] = item
    except grpc.aio.AioRpcError as err:
        raise from_grpc(err, "retrieval") from None
    # In request order, whatever order the documents finished in.
    return [results[s.id or s.uri] for s in sources if (s.id or s.uri) in results]


@router.post("/v1/collections/{name}/documents/delete", response_class=Response)
async def delete_documents(
    name: str, body: DeleteDocumentsBody, request: Request, retrieval: RetrievalDep
) -> Response:
    require(request.state.identity, RETRIEVAL_ADMIN, "delete documents")
    async with retrieval.metered(request, "/v1/collections/{name}/documents/delete") as meter:
        reply = await retrieval.call(
            retrieval.stub.DeleteDocuments,
            retrieval_pb2.DeleteDocumentsRequest(context=_context(request), collection=name, ids=body.ids),
        )
    return _json(
        {"object": "documents.deleted", "documents": reply.documents, "chunks": reply.chunks}, meter=meter
    )


@router.delete("/v1/collections/{name}/documents/{document_id:path}", response_class=Response)
async def delete_document(name: str, document_id: str, request: Request, retrieval: RetrievalDep) -> Response:
    require(request.state.identity, RETRIEVAL_ADMIN, "delete documents")
    async with retrieval.metered(request, "/v1/collections/{name}/documents/{document_id}") as meter:
        reply = await retrieval.call(
            retrieval.stub.DeleteDocuments,
            retrieval_pb2.DeleteDocumentsRequest(
                context=_context(request), collection=name, ids=[document_id]
            ),
        )
        if not reply.documents and not reply.chunks:
            raise ApiError(404, "no such document", code="not_found", param="document_id")
    return _json(
        {"object": "document.deleted", "id": document_id, "deleted": True, "chunks": reply.chunks},
        meter=meter,
    )


@router.post("/v1/collections/{name}/search", response_class=Response)
async def search(name: str, body: SearchBody, request: Request, retrieval: RetrievalDep) -> Response:
    async with retrieval.metered(request, "/v1/collections/{name}/search") as meter:
        reply = await retrieval.call(
            retrieval.stub.Search,
            retrieval_pb2.SearchRequest(
                context=_context(request),
                collection=name,
                query=body.query,
                vector=body.vector or [],
                k=body.k,
                filter=body.filter,
                hybrid_weight=body.hybrid_weight,
            ),
        )
    return _json(
        {"object": "list", "data": [_chunk(c) for c in reply.chunks], "cached": reply.cached}, meter=meter
    )


@router.get("/v1/chunks/{chunk_id}", response_class=Response)
async def get_chunk(chunk_id: str, request: Request, retrieval: RetrievalDep) -> Response:
    async with retrieval.metered(request, "/v1/chunks/{chunk_id}") as meter:
        reply = await retrieval.call(
            retrieval.stub.GetChunk,
            retrieval_pb2.GetChunkRequest(context=_context(request), chunk_id=chunk_id),
        )
    return _json({**_chunk(reply.chunk), "collection": reply.collection}, meter=meter)


@router.post("/v1/embeddings", response_class=Response)
async def embeddings(body: EmbeddingsBody, request: Request, retrieval: RetrievalDep) -> Response:
    inputs = [body.input] if isinstance(body.input, str) else body.input
    # Reserved against tokens per minute before the call, reconciled with the model's count.
    estimate = sum(approx_tokens(text) for text in inputs)
    async with retrieval.metered(
        request, "/v1/embeddings", model=body.model, reserve_tokens=estimate
    ) as meter:
        reply = await retrieval.call(
            retrieval.stub.Embed,
            retrieval_pb2.EmbedRequest(context=_context(request), inputs=inputs, model=body.model),
        )
        meter.model, meter.tokens = reply.model or body.model, reply.tokens
        if (
            body.dimensions is not None
            and reply.embeddings
            and body.dimensions != len(reply.embeddings[0].values)
        ):
            raise ApiError(400, "this model does not support other dimensions", param="dimensions")
    data = []
    for index, embedding in enumerate(reply.embeddings):
        values: Any = list(embedding.values)
        if body.encoding_format == "base64":
            # What OpenAI sends, and what its client decodes: little-endian float32, base64.
            values = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": index, "embedding": values})
    return _json(
        {
            "object": "list",
            "data": data,
            "model": reply.model,
            "usage": {"prompt_tokens": reply.tokens, "total_tokens": reply.tokens},
        },
        meter=meter,
    )
