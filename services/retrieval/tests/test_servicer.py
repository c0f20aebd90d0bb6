import logging

import grpc
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import read_error_detail

Stub = retrieval_pb2_grpc.RetrievalServiceStub

DOCS = {
    "pgvector": (
        "pgvector adds a vector column type to PostgreSQL. An HNSW index on that column "
        "answers approximate nearest-neighbour queries; vector_cosine_ops makes it use "
        "cosine distance. Raising ef_search improves recall at the cost of latency."
    ),
    "sourdough": (
        "Sourdough bread rises with a starter of wild yeast and lactic bacteria instead of "
        "commercial yeast. Feed the starter flour and water, let the dough proof overnight, "
        "then bake it in a hot Dutch oven for a crisp crust."
    ),
    "apollo": (
        "Apollo 11 landed on the Moon on 20 July 1969. Neil Armstrong and Buzz Aldrin walked "
        "on the lunar surface while Michael Collins orbited above in the command module."
    ),
}


def ctx(org: str = "org-a") -> common_pb2.RequestContext:
    return common_pb2.RequestContext(org_id=org, request_id="req-1")


def docs(texts: dict[str, str], **metadata: str) -> list[retrieval_pb2.Document]:
    return [retrieval_pb2.Document(id=i, text=t, metadata=metadata) for i, t in texts.items()]


async def ingest(stub: Stub, collection: str, texts: dict[str, str], org: str = "org-a", **metadata: str):
    return await stub.Ingest(
        retrieval_pb2.IngestRequest(
            context=ctx(org), collection=collection, documents=docs(texts, **metadata)
        ),
        timeout=30,
    )


async def search(stub: Stub, collection: str, query: str, k: int = 0, org: str = "org-a"):
    response = await stub.Search(
        retrieval_pb2.SearchRequest(context=ctx(org), collection=collection, query=query, k=k), timeout=10
    )
    return list(response.chunks)


async def test_the_answer_ranks_first_with_its_source(stub: Stub):
    response = await ingest(stub, "topics", DOCS, team="docs")
    assert response.documents == 3
    assert response.chunks >= 3

    chunks = await search(stub, "topics", "When did astronauts first walk on the Moon?", k=3)
    assert [c.source_id for c in chunks][0] == "apollo"
    assert "20 July 1969" in chunks[0].text
    assert chunks[0].metadata == {"team": "docs"}
    assert chunks[0].chunk_id and chunks[0].ordinal == 0
    scores = [c.score for c in chunks]
    assert scores == sorted(scores, reverse=True)
    assert 0 < scores[0] <= 1.0001
    assert scores[0] - scores[1] > 0.1

    bread = await search(stub, "topics", "how long should dough proof before baking", k=1)
    assert [c.source_id for c in bread] == ["sourdough"]


async def test_k_zero_means_the_default_and_k_caps_the_results(stub: Stub):
    long_doc = {"manual": "\n\n".join(f"Section {i}. " + f"Details about part {i}. " * 30 for i in range(8))}
    response = await ingest(stub, "k-test", long_doc)
    assert response.chunks > 4
    assert len(await search(stub, "k-test", "details about part 3")) == 4  # retrieval_default_k
    assert len(await search(stub, "k-test", "details about part 3", k=2)) == 2


async def test_reingest_replaces_the_document(stub: Stub):
    long_text = "\n\n".join(
        f"Chapter {i}. The lighthouse keeper logged the weather at dawn and polished the lens." * 4
        for i in range(6)
    )
    first = await ingest(stub, "replace", {"log": long_text, "other": DOCS["sourdough"]})
    assert first.chunks > 3

    second = await ingest(
        stub, "replace", {"log": "The lighthouse was automated in 1990 and the keeper retired."}
    )
    assert second.chunks == 1

    chunks = await search(stub, "replace", "lighthouse keeper", k=20)
    log_chunks = [c for c in chunks if c.source_id == "log"]
    assert [c.text for c in log_chunks] == ["The lighthouse was automated in 1990 and the keeper retired."]
    # Documents not named in the second call are left alone.
    assert any(c.source_id == "other" for c in chunks)


async def test_reingesting_unchanged_text_reuses_stored_embeddings(
    stub: Stub, caplog: pytest.LogCaptureFixture
):
    await ingest(stub, "reuse", {"apollo": DOCS["apollo"]})
    with caplog.at_level(logging.INFO, logger="retrieval_service.servicer"):
        response = await ingest(stub, "reuse", {"apollo": DOCS["apollo"]})
    assert response.chunks == 1
    [record] = [r for r in caplog.records if r.getMessage() == "ingested"]
    assert record.embedded == 0  # type: ignore[attr-defined]
    assert len(await search(stub, "reuse", "moon landing", k=10)) == 1


async def test_each_tenant_sees_only_its_own_chunks(stub: Stub):
    await ingest(
        stub, "shared-name", {"plan": "Org A plans to open an office in Lisbon next spring."}, org="org-a"
    )
    await ingest(
        stub, "shared-name", {"plan": "Org B plans to open an office in Oslo next spring."}, org="org-b"
    )

    a = await search(stub, "shared-name", "where will the new office open?", k=10, org="org-a")
    b = await search(stub, "shared-name", "where will the new office open?", k=10, org="org-b")
    assert [c.text for c in a] == ["Org A plans to open an office in Lisbon next spring."]
    assert [c.text for c in b] == ["Org B plans to open an office in Oslo next spring."]
    assert await search(stub, "shared-name", "office", k=10, org="org-c") == []
    # Collections are separate within one tenant too.
    assert await search(stub, "other-collection", "office", k=10, org="org-a") == []


def _ingest_request(**changes) -> retrieval_pb2.IngestRequest:
    request = retrieval_pb2.IngestRequest(
        context=ctx(), collection="valid", documents=[retrieval_pb2.Document(id="d1", text="some text")]
    )
    for key, value in changes.items():
        if key == "documents":
            del request.documents[:]
            request.documents.extend(value)
        elif key == "org_id":
            request.context.org_id = value
        else:
            setattr(request, key, value)
    return request


def _doc(id="d1", text="some text", **metadata) -> retrieval_pb2.Document:
    return retrieval_pb2.Document(id=id, text=text, metadata=metadata)


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"collection": ""}, "collection"),
        ({"collection": "has space"}, "collection"),
        ({"collection": "c" * 65}, "collection"),
        ({"collection": "drop';--"}, "collection"),
        ({"documents": []}, "documents"),
        ({"documents": [_doc(id="")]}, "documents[0].id"),
        ({"documents": [_doc(), _doc(id="d2", text="   ")]}, "documents[1].text"),
        ({"documents": [_doc(), _doc()]}, "documents[1].id"),
        ({"documents": [_doc(text="nul \x00 byte")]}, "documents[0].text"),
        ({"documents": [_doc(**{f"k{i}": "v" for i in range(5)})]}, "documents[0].metadata"),
        ({"documents": [_doc(text="x" * (1024 * 1024 + 1))]}, "documents[0].text"),
    ],
)
async def test_bad_ingest_requests_are_invalid_arguments(stub: Stub, changes: dict, param: str):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(_ingest_request(**changes), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = read_error_detail(info.value)
    assert detail is not None and detail.param == param


@pytest.mark.parametrize(
    ("org", "collection", "query", "k", "param"),
    [
        ("org-a", "bad/name", "question", 0, "collection"),
        ("org-a", "valid", "  ", 0, "query"),
        ("org-a", "valid", "q" * 2049, 0, "query"),
        ("org-a", "valid", "question", 21, "k"),
    ],
)
async def test_bad_search_requests_are_invalid_arguments(
    stub: Stub, org: str, collection: str, query: str, k: int, param: str
):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Search(
            retrieval_pb2.SearchRequest(context=ctx(org), collection=collection, query=query, k=k), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    detail = read_error_detail(info.value)
    assert detail is not None and detail.param == param


async def test_error_messages_do_not_echo_the_input(stub: Stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(_ingest_request(collection="canary-9f3e secret!"), timeout=10)
    assert "canary" not in (info.value.details() or "")


async def test_sql_in_fields_is_only_data(stub: Stub):
    hostile = "x'); DROP TABLE retrieval_chunks; --"
    await ingest(stub, "hostile", {hostile: hostile}, org=hostile)
    chunks = await search(stub, "hostile", hostile, k=5, org=hostile)
    assert [(c.source_id, c.text) for c in chunks] == [(hostile, hostile)]
    # The table is still there and still works for everyone else.
    await ingest(stub, "after-hostile", {"apollo": DOCS["apollo"]})
    assert [c.source_id for c in await search(stub, "after-hostile", "moon", k=1)] == ["apollo"]


async def test_an_expired_deadline_is_reported_as_such(stub: Stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Ingest(_ingest_request(documents=[_doc(text="word " * 20_000)]), timeout=0.05)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
