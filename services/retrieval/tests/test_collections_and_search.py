"""The product API through real gRPC and pgvector: collections, filters, deletes, hybrid, cache, tenancy."""

import grpc
import numpy as np
import psycopg
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import read_error_detail
from retrieval_service.db import DOCUMENTS, TABLE

Stub = retrieval_pb2_grpc.RetrievalServiceStub

HANDBOOK = {
    "leave": "Employees get 25 days of paid leave a year. Unused leave carries over until March.",
    "expenses": "Submit travel expenses within 30 days with receipts attached. Meals are capped at 40 euros.",
    "security": "Laptops must use full-disk encryption. Report a lost device to the security desk at once.",
    "parts": "Replacement part XQ-7731 fits the pump housing. Order it from the maintenance portal.",
}


def ctx(org: str) -> common_pb2.RequestContext:
    return common_pb2.RequestContext(org_id=org)


async def ingest(stub: Stub, org: str, collection: str, docs: dict[str, str], **metadata: str):
    return await stub.Ingest(
        retrieval_pb2.IngestRequest(
            context=ctx(org),
            collection=collection,
            documents=[retrieval_pb2.Document(id=i, text=t, metadata=metadata) for i, t in docs.items()],
        ),
        timeout=60,
    )


async def search(
    stub: Stub, org: str, collection: str, query: str = "", **fields
) -> retrieval_pb2.SearchResponse:
    return await stub.Search(
        retrieval_pb2.SearchRequest(context=ctx(org), collection=collection, query=query, **fields),
        timeout=30,
    )


async def rows(database_url: str, tenant: str, collection: str, source_id: str) -> tuple[int, int]:
    """Chunk rows (with their vectors) and document rows left in the database for one document."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        chunks = await (
            await conn.execute(
                f"SELECT count(*) FROM {TABLE} WHERE tenant = %s AND collection = %s AND source_id = %s",
                (tenant, collection, source_id),
            )
        ).fetchone()
        docs = await (
            await conn.execute(
                f"SELECT count(*) FROM {DOCUMENTS} WHERE tenant = %s AND collection = %s AND source_id = %s",
                (tenant, collection, source_id),
            )
        ).fetchone()
    return int(chunks[0]), int(docs[0])


async def test_collections_are_created_listed_and_deleted_per_tenant(stub: Stub, database_url: str):
    made = await stub.CreateCollection(
        retrieval_pb2.CreateCollectionRequest(context=ctx("coll-a"), name="handbook", description="HR"),
        timeout=10,
    )
    assert made.created and made.collection.name == "handbook" and made.collection.description == "HR"
    again = await stub.CreateCollection(
        retrieval_pb2.CreateCollectionRequest(context=ctx("coll-a"), name="handbook"), timeout=10
    )
    assert not again.created and again.collection.description == "HR"

    await ingest(stub, "coll-a", "handbook", HANDBOOK)
    await ingest(stub, "coll-a", "implicit", {"leave": HANDBOOK["leave"]})  # Ingest creates it
    listed = await stub.ListCollections(
        retrieval_pb2.ListCollectionsRequest(context=ctx("coll-a")), timeout=10
    )
    by_name = {c.name: c for c in listed.collections}
    assert set(by_name) == {"handbook", "implicit"}
    assert by_name["handbook"].documents == 4 and by_name["handbook"].chunks == 4
    assert by_name["handbook"].created_at.endswith("Z")
    other = await stub.ListCollections(
        retrieval_pb2.ListCollectionsRequest(context=ctx("coll-b")), timeout=10
    )
    assert list(other.collections) == []

    # Another tenant cannot delete it, or even learn that it exists.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteCollection(
            retrieval_pb2.DeleteCollectionRequest(context=ctx("coll-b"), name="handbook")
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND

    deleted = await stub.DeleteCollection(
        retrieval_pb2.DeleteCollectionRequest(context=ctx("coll-a"), name="handbook"), timeout=10
    )
    assert (deleted.documents, deleted.chunks) == (4, 4)
    assert (await search(stub, "coll-a", "handbook", "paid leave", k=10)).chunks == []
    for source_id in HANDBOOK:
        assert await rows(database_url, "coll-a", "handbook", source_id) == (0, 0)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteCollection(
            retrieval_pb2.DeleteCollectionRequest(context=ctx("coll-a"), name="handbook")
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_filters_match_document_metadata(stub: Stub):
    await ingest(stub, "filt", "docs", {"leave": HANDBOOK["leave"]}, team="hr", region="eu")
    await ingest(stub, "filt", "docs", {"expenses": HANDBOOK["expenses"]}, team="finance", region="eu")
    await ingest(stub, "filt", "docs", {"security": HANDBOOK["security"]}, team="it", region="us")

    everything = await search(stub, "filt", "docs", "company rules", k=10)
    assert len(everything.chunks) == 3
    eu = await search(stub, "filt", "docs", "company rules", k=10, filter={"region": "eu"})
    assert {c.source_id for c in eu.chunks} == {"leave", "expenses"}
    finance_eu = await search(
        stub, "filt", "docs", "company rules", k=10, filter={"region": "eu", "team": "finance"}
    )
    assert [c.source_id for c in finance_eu.chunks] == ["expenses"]
    assert (await search(stub, "filt", "docs", "company rules", k=10, filter={"team": "legal"})).chunks == []


async def test_deleted_documents_leave_no_chunks_or_vectors(stub: Stub, database_url: str):
    await ingest(stub, "del", "docs", HANDBOOK)
    assert await rows(database_url, "del", "docs", "expenses") == (1, 1)
    deleted = await stub.DeleteDocuments(
        retrieval_pb2.DeleteDocumentsRequest(context=ctx("del"), collection="docs", ids=["expenses", "nope"]),
        timeout=10,
    )
    assert (deleted.documents, deleted.chunks) == (1, 1)
    assert await rows(database_url, "del", "docs", "expenses") == (0, 0)
    found = await search(stub, "del", "docs", "travel expenses receipts", k=10)
    assert "expenses" not in {c.source_id for c in found.chunks}
    assert len(found.chunks) == 3
    # Deleting again is not an error, and changes nothing.
    again = await stub.DeleteDocuments(
        retrieval_pb2.DeleteDocumentsRequest(context=ctx("del"), collection="docs", ids=["expenses"]),
        timeout=10,
    )
    assert (again.documents, again.chunks) == (0, 0)


async def test_identical_documents_in_two_tenants_stay_apart(stub: Stub, database_url: str):
    for org in ("twin-a", "twin-b"):
        await ingest(stub, org, "same", HANDBOOK, owner=org)
    a = await search(stub, "twin-a", "same", "lost laptop", k=10)
    b = await search(stub, "twin-b", "same", "lost laptop", k=10)
    assert len(a.chunks) == len(b.chunks) == 4
    assert {c.metadata["owner"] for c in a.chunks} == {"twin-a"}
    assert {c.metadata["owner"] for c in b.chunks} == {"twin-b"}
    assert not {c.chunk_id for c in a.chunks} & {c.chunk_id for c in b.chunks}

    # A chunk id is no key to another tenant's data.
    theirs = b.chunks[0].chunk_id
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetChunk(retrieval_pb2.GetChunkRequest(context=ctx("twin-a"), chunk_id=theirs), timeout=10)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    got = await stub.GetChunk(
        retrieval_pb2.GetChunkRequest(context=ctx("twin-b"), chunk_id=theirs), timeout=10
    )
    assert got.chunk.text == b.chunks[0].text and got.collection == "same"

    # Deleting in one tenant leaves the other's identical document in place.
    await stub.DeleteDocuments(
        retrieval_pb2.DeleteDocumentsRequest(context=ctx("twin-a"), collection="same", ids=list(HANDBOOK)),
        timeout=10,
    )
    assert (await search(stub, "twin-a", "same", "lost laptop", k=10)).chunks == []
    assert len((await search(stub, "twin-b", "same", "lost laptop", k=10)).chunks) == 4
    assert await rows(database_url, "twin-b", "same", "security") == (1, 1)


async def test_repeated_query_hits_the_cache_and_an_ingest_invalidates_it(stub: Stub, metrics_registry):
    def lookups(result: str) -> float:
        labels = {"cache": "results", "result": result}
        return metrics_registry.get_sample_value("llmsuite_retrieval_cache_lookups_total", labels) or 0.0

    await ingest(stub, "cache", "docs", {"leave": HANDBOOK["leave"]})
    hits, misses = lookups("hit"), lookups("miss")
    first = await search(stub, "cache", "docs", "how many vacation days", k=5)
    second = await search(stub, "cache", "docs", "how many vacation days", k=5)
    assert not first.cached and second.cached
    # The hit rate is exported: hit / (hit + miss) of this counter.
    assert (lookups("hit") - hits, lookups("miss") - misses) == (1, 1)
    assert [c.chunk_id for c in first.chunks] == [c.chunk_id for c in second.chunks]
    # Other parameters are other answers.
    assert not (await search(stub, "cache", "docs", "how many vacation days", k=4)).cached

    await ingest(stub, "cache", "docs", {"leave-2": "Parents get 10 extra vacation days."})
    after = await search(stub, "cache", "docs", "how many vacation days", k=5)
    assert not after.cached
    assert {c.source_id for c in after.chunks} == {"leave", "leave-2"}
    assert (await search(stub, "cache", "docs", "how many vacation days", k=5)).cached

    # An unchanged re-ingest writes nothing, so the cached answer stays valid.
    reply = await ingest(stub, "cache", "docs", {"leave": HANDBOOK["leave"]})
    assert reply.unchanged == 1
    assert (await search(stub, "cache", "docs", "how many vacation days", k=5)).cached

    await stub.DeleteDocuments(
        retrieval_pb2.DeleteDocumentsRequest(context=ctx("cache"), collection="docs", ids=["leave-2"]),
        timeout=10,
    )
    gone = await search(stub, "cache", "docs", "how many vacation days", k=5)
    assert not gone.cached and [c.source_id for c in gone.chunks] == ["leave"]


async def test_hybrid_search_finds_an_exact_code_the_vectors_rank_low(stub: Stub):
    lookalikes = {
        f"ticket-{code}": f"Ticket {code}: the valve housing order is delayed."
        for code in ("XQ-7713", "XQ-7371", "QX-7731", "XQ-1773", "XQ-7737", "XQ-7317", "XK-7731", "XQ-7781")
    }
    # The wanted code is one mention in a chunk about something else, so its embedding barely shows it.
    wanted = {
        "facilities": "The cafeteria now opens at eight and serves a vegan dish every day. Meeting rooms on "
        "the "
        "second floor were repainted, and the coffee machine was replaced under ticket XQ-7731 last week."
    }
    await ingest(stub, "hyb", "docs", {**lookalikes, **wanted})
    vector_only = await search(stub, "hyb", "docs", "XQ-7731", k=3)
    hybrid = await search(stub, "hyb", "docs", "XQ-7731", k=3, hybrid_weight=0.7)
    assert "facilities" not in [c.source_id for c in vector_only.chunks]
    assert hybrid.chunks[0].source_id == "facilities"
    assert hybrid.chunks[0].fused_score > hybrid.chunks[1].fused_score > 0
    assert all(c.fused_score == 0 for c in vector_only.chunks)
    # The score stays the cosine similarity in both modes.
    scores = {c.chunk_id: c.score for c in vector_only.chunks}
    for c in hybrid.chunks:
        if c.chunk_id in scores:
            assert c.score == pytest.approx(scores[c.chunk_id], abs=1e-5)


async def test_search_by_vector_and_embed(stub: Stub):
    await ingest(stub, "vec", "docs", HANDBOOK)
    embedded = await stub.Embed(
        retrieval_pb2.EmbedRequest(context=ctx("vec"), inputs=["meal allowance on business trips", "x"]),
        timeout=30,
    )
    assert len(embedded.embeddings) == 2 and embedded.model and embedded.tokens >= 6
    vector = np.asarray(embedded.embeddings[0].values)
    assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-4
    by_vector = await search(stub, "vec", "docs", vector=vector.tolist(), k=2)
    by_text = await search(stub, "vec", "docs", "meal allowance on business trips", k=2)
    assert [c.chunk_id for c in by_vector.chunks] == [c.chunk_id for c in by_text.chunks]
    assert by_vector.chunks[0].source_id == "expenses"


@pytest.mark.parametrize(
    ("request_", "param"),
    [
        (
            retrieval_pb2.SearchRequest(context=ctx("v"), collection="c", query="q", hybrid_weight=1.5),
            "hybrid_weight",
        ),
        (retrieval_pb2.SearchRequest(context=ctx("v"), collection="c", vector=[0.1, 0.2]), "vector"),
        (retrieval_pb2.SearchRequest(context=ctx("v"), collection="c", vector=[0.0] * 384), "vector"),
        (
            retrieval_pb2.SearchRequest(
                context=ctx("v"), collection="c", vector=[0.1] * 384, hybrid_weight=0.5
            ),
            "query",
        ),
        (retrieval_pb2.SearchRequest(context=ctx("v"), collection="c"), "query"),
        (
            retrieval_pb2.SearchRequest(context=ctx("v"), collection="c", query="q", filter={"": "x"}),
            "filter",
        ),
    ],
)
async def test_bad_search_options_are_invalid_arguments(stub: Stub, request_, param: str):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Search(request_, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert read_error_detail(info.value).param == param


async def test_bad_ids_are_invalid_arguments(stub: Stub):
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.GetChunk(retrieval_pb2.GetChunkRequest(context=ctx("v"), chunk_id="'; --"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.DeleteDocuments(
            retrieval_pb2.DeleteDocumentsRequest(context=ctx("v"), collection="c"), timeout=10
        )
    assert read_error_detail(info.value).param == "ids"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(retrieval_pb2.EmbedRequest(context=ctx("v"), inputs=["ok", " "]), timeout=10)
    assert read_error_detail(info.value).param == "inputs[1]"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CreateCollection(
            retrieval_pb2.CreateCollectionRequest(context=ctx("v"), name="a b"), timeout=10
        )
    assert read_error_detail(info.value).param == "name"
