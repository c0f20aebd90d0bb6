"""Every RPC, request streams included, answers INVALID_ARGUMENT for a message that does not parse.

Proto3 strings must be UTF-8, so a lone surrogate cannot travel in one: a client that encodes
it anyway (b"\\xed\\xa0\\x80") sends a message the server's parser rejects. The bytes are put on
the wire through a raw method on the same server, since no well-behaved stub can produce them.
"""

from collections.abc import AsyncIterator

import grpc
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import read_error_detail

from tests.service_auth import auth

SERVICE = "/llmsuite.retrieval.v1.RetrievalService/"
CTX = common_pb2.RequestContext(org_id="utf8-org")
MARK = "\x01XYZ\x01"
LONE_SURROGATE = b"\x01\xed\xa0\x80\x01"  # as long as MARK, so every length prefix still holds


def invalid_utf8(message) -> bytes:  # type: ignore[no-untyped-def]
    """`message` serialized with MARK (in one string field) swapped for a UTF-8-encoded surrogate."""
    data = message.SerializeToString()
    assert data.count(MARK.encode()) == 1 and len(LONE_SURROGATE) == len(MARK.encode())
    return data.replace(MARK.encode(), LONE_SURROGATE)


@pytest.fixture(scope="module")
async def raw_channel(retrieval_target: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(retrieval_target) as channel:
        yield channel


def failed_to_parse(err: grpc.aio.AioRpcError) -> None:
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err
    detail = read_error_detail(err)
    assert detail is not None and detail.code == "invalid_message"
    assert detail.message == "request message could not be parsed"


async def still_answers(stub: retrieval_pb2_grpc.RetrievalServiceStub) -> None:
    reply = await stub.CreateCollection(
        retrieval_pb2.CreateCollectionRequest(context=CTX, name="after"), timeout=30
    )
    assert reply.collection.name == "after"


UNARY = {
    "Ingest": retrieval_pb2.IngestRequest(
        context=CTX, collection="docs", documents=[retrieval_pb2.Document(id="a", text=MARK)]
    ),
    "Search": retrieval_pb2.SearchRequest(context=CTX, collection="docs", query=MARK),
    "CreateCollection": retrieval_pb2.CreateCollectionRequest(context=CTX, name=MARK),
    "ListCollections": retrieval_pb2.ListCollectionsRequest(
        context=common_pb2.RequestContext(org_id="utf8-org", request_id=MARK)
    ),
    "DeleteCollection": retrieval_pb2.DeleteCollectionRequest(context=CTX, name=MARK),
    "DeleteDocuments": retrieval_pb2.DeleteDocumentsRequest(context=CTX, collection="docs", ids=[MARK]),
    "GetChunk": retrieval_pb2.GetChunkRequest(context=CTX, chunk_id=MARK),
    "Embed": retrieval_pb2.EmbedRequest(context=CTX, inputs=[MARK]),
}


@pytest.mark.parametrize("method", sorted(UNARY))
async def test_unary_rpc_with_invalid_utf8_is_invalid_argument(raw_channel, stub, method: str):
    call = raw_channel.unary_unary(
        SERVICE + method, request_serializer=lambda b: b, response_deserializer=None
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(invalid_utf8(UNARY[method]), timeout=30, metadata=auth("retrieval", "utf8-org"))
    failed_to_parse(info.value)
    await still_answers(stub)


def stream_message(text: str, first: bool) -> retrieval_pb2.IngestStreamRequest:
    source = retrieval_pb2.Source(id=f"doc-{first}", text=text)
    if first:
        return retrieval_pb2.IngestStreamRequest(context=CTX, collection="docs", sources=[source])
    return retrieval_pb2.IngestStreamRequest(sources=[source])


@pytest.mark.parametrize("bad_index", [0, 1], ids=["first-message", "later-message"])
async def test_ingest_stream_with_invalid_utf8_is_invalid_argument(raw_channel, stub, bad_index: int):
    call = raw_channel.stream_stream(
        SERVICE + "IngestStream",
        request_serializer=lambda b: b,
        response_deserializer=retrieval_pb2.IngestProgress.FromString,
    )

    # Written one by one and no further than the bad message: the server ends the call there, and
    # a write after that would fail on the client's side, not the server's.
    stream = call(timeout=60, metadata=auth("retrieval", "utf8-org"))
    for i in range(bad_index + 1):
        text = MARK if i == bad_index else "Printer paper is in the second drawer."
        message = stream_message(text, first=i == 0)
        await stream.write(invalid_utf8(message) if i == bad_index else message.SerializeToString())
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for progress in stream:
            received.append(progress)
    failed_to_parse(info.value)
    assert all(p.status != retrieval_pb2.IngestProgress.FAILED for p in received)
    await still_answers(stub)
