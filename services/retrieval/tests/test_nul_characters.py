"""NUL characters never reach PostgreSQL (its text columns refuse them).

What the caller writes (names, ids, metadata, queries, inline text) is refused with
INVALID_ARGUMENT naming the field; text the service extracts from document bytes has NUL
removed, since it comes from the file's format and the caller cannot edit it out.
"""

import grpc
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import read_error_detail
from retrieval_service.parsing import HTML, PLAIN, clean, extract_text

from tests.service_auth import auth

Stub = retrieval_pb2_grpc.RetrievalServiceStub
Progress = retrieval_pb2.IngestProgress
Source = retrieval_pb2.Source
ORG = "nul-org"
CTX = common_pb2.RequestContext(org_id=ORG)


async def refused(call) -> common_pb2.ErrorDetail:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = read_error_detail(info.value)
    assert detail is not None and detail.code == "invalid_request"
    assert "NUL" in detail.message or "letters, digits" in detail.message
    return detail


async def still_answers(stub: Stub) -> None:
    reply = await stub.ListCollections(retrieval_pb2.ListCollectionsRequest(context=CTX), timeout=30)
    assert all("\x00" not in c.name for c in reply.collections)


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (
            lambda s: s.CreateCollection(retrieval_pb2.CreateCollectionRequest(context=CTX, name="a\x00b")),
            "name",
        ),
        (
            lambda s: s.CreateCollection(
                retrieval_pb2.CreateCollectionRequest(context=CTX, name="ok", description="x\x00")
            ),
            "description",
        ),
        (
            lambda s: s.DeleteCollection(retrieval_pb2.DeleteCollectionRequest(context=CTX, name="\x00")),
            "name",
        ),
        (
            lambda s: s.Ingest(
                retrieval_pb2.IngestRequest(
                    context=CTX, collection="docs", documents=[retrieval_pb2.Document(id="a", text="a\x00b")]
                )
            ),
            "documents[0].text",
        ),
        (
            lambda s: s.Ingest(
                retrieval_pb2.IngestRequest(
                    context=CTX,
                    collection="docs",
                    documents=[retrieval_pb2.Document(id="a", text="ab", metadata={"k": "v\x00"})],
                )
            ),
            "documents[0].metadata",
        ),
        (
            lambda s: s.Ingest(
                retrieval_pb2.IngestRequest(
                    context=CTX, collection="docs", documents=[retrieval_pb2.Document(id="a\x00", text="ab")]
                )
            ),
            "documents[0].id",
        ),
        (
            lambda s: s.Search(retrieval_pb2.SearchRequest(context=CTX, collection="docs", query="q\x00")),
            "query",
        ),
        (
            lambda s: s.Search(
                retrieval_pb2.SearchRequest(context=CTX, collection="docs", query="q", filter={"k\x00": "v"})
            ),
            "filter",
        ),
        (
            lambda s: s.DeleteDocuments(
                retrieval_pb2.DeleteDocumentsRequest(context=CTX, collection="docs", ids=["a\x00"])
            ),
            "ids[0]",
        ),
        (lambda s: s.Embed(retrieval_pb2.EmbedRequest(context=CTX, inputs=["a\x00"])), "inputs[0]"),
    ],
    ids=[
        "collection-name",
        "description",
        "delete-collection-name",
        "document-text",
        "document-metadata",
        "document-id",
        "query",
        "filter",
        "delete-ids",
        "embed-inputs",
    ],
)
async def test_a_nul_the_caller_wrote_is_invalid_argument(stub: Stub, make, param: str):  # type: ignore[no-untyped-def]
    detail = await refused(make(stub))
    assert detail.param == param
    await still_answers(stub)


async def stream(stub: Stub, collection: str, *sources: Source) -> dict[str, Progress]:
    async def requests():
        yield retrieval_pb2.IngestStreamRequest(context=CTX, collection=collection, sources=sources)

    calls = stub.IngestStream(requests(), timeout=120, metadata=auth("retrieval", ORG))
    return {p.source_id: p async for p in calls}


async def test_a_nul_in_a_stream_collection_name_ends_the_stream_with_invalid_argument(stub: Stub):
    detail = await refused(stream(stub, "do\x00cs", Source(id="a", text="words")))
    assert detail.param == "collection"
    results = await stream(stub, "docs", Source(id="a", text="The pool closes at eight."))
    assert results["a"].status in (Progress.INDEXED, Progress.UNCHANGED)


async def test_a_nul_in_a_sources_own_fields_fails_that_source_alone(stub: Stub):
    results = await stream(
        stub,
        "docs",
        Source(id="inline", text="Lockers are\x00 emptied on Fridays."),
        Source(id="meta", text="Towels are free.", metadata={"owner": "front\x00desk"}),
        Source(id="id\x00", text="The sauna is mixed."),
        Source(id="next", text="The gym opens at six."),
    )
    expected = {"inline": "sources[0].text", "meta": "sources[1].metadata", "id\x00": "sources[2].id"}
    for source_id, param in expected.items():
        assert results[source_id].status == Progress.FAILED
        assert (results[source_id].error.code, results[source_id].error.param) == ("invalid_request", param)
        assert "NUL" in results[source_id].error.message
    assert results["next"].status in (Progress.INDEXED, Progress.UNCHANGED)


async def test_nul_in_document_bytes_is_removed_and_the_document_indexed(stub: Stub):
    # UTF-16 text read as UTF-8 is the common case: every other byte is a NUL.
    results = await stream(
        stub,
        "bytes",
        Source(id="utf16.txt", data=UTF16),
        Source(id="page.html", data=b"<p>Visitors\x00 wait in the lobby.</p>", content_type="text/html"),
    )
    assert {r.status for r in results.values()} == {Progress.INDEXED}
    assert all(r.chunks == 1 for r in results.values())


UTF16 = "Bicycles are parked behind the east gate.".encode("utf-16-le")


@pytest.mark.parametrize(
    ("data", "kind", "text"),
    [
        (UTF16, PLAIN, "Bicycles are parked behind the east gate."),
        (b"<p>Visitors\x00 wait in the lobby.</p>", HTML, "Visitors wait in the lobby."),
    ],
    ids=["utf16-as-plain-text", "html"],
)
def test_extracted_text_has_no_nul(data: bytes, kind: str, text: str):
    assert extract_text(data, kind) == text


def test_lone_surrogates_from_a_parser_become_replacement_characters():
    # pypdf can yield them from a font's broken Unicode map; PostgreSQL's UTF-8 cannot store them.
    assert clean("a\ud800b\x00c") == "a\ufffdbc"
