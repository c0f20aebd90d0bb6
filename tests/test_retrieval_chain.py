"""Ingest three documents, ask about one: the right chunk ranks first and reaches the upstream prompt."""

import grpc
import openai
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

from tests.conftest import FAKE_MODEL

DOCUMENTS = {
    "volcanoes": "Mount Etna in Sicily is one of the most active volcanoes in the world; it erupts several times a year.",
    "coffee": "The office coffee machine is descaled every Tuesday morning, so it is unavailable until 10 am.",
    "tides": "Tides are caused mainly by the gravitational pull of the Moon on the oceans of the Earth.",
}
QUESTION = "When is the coffee machine unavailable?"


def ingest(suite, collection: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{suite.cfg.ports.retrieval}") as channel:
        reply = retrieval_pb2_grpc.RetrievalServiceStub(channel).Ingest(
            retrieval_pb2.IngestRequest(
                context=common_pb2.RequestContext(org_id="default"),
                collection=collection,
                documents=[retrieval_pb2.Document(id=k, text=v) for k, v in DOCUMENTS.items()],
            ),
            timeout=60,
            metadata=suite.grpc_auth("retrieval"),
        )
    assert reply.documents == 3 and reply.chunks >= 3


def test_right_chunk_ranks_first_and_reaches_the_upstream(suite, unique_name):
    ingest(suite, unique_name)

    with grpc.insecure_channel(f"127.0.0.1:{suite.cfg.ports.retrieval}") as channel:
        found = retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(
            retrieval_pb2.SearchRequest(
                context=common_pb2.RequestContext(org_id="default"),
                collection=unique_name,
                query=QUESTION,
                k=3,
            ),
            timeout=30,
            metadata=suite.grpc_auth("retrieval"),
        )
    assert [c.source_id for c in found.chunks][0] == "coffee"
    assert found.chunks[0].score > found.chunks[1].score

    suite.clear_upstream_requests()
    client = openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=suite.api_key, max_retries=0)
    reply = client.chat.completions.create(
        model=FAKE_MODEL,
        messages=[{"role": "user", "content": QUESTION}],
        extra_body={"retrieval": {"collection": unique_name, "k": 2}},
    )
    citations = reply.model_extra["citations"]
    assert citations[0]["source_id"] == "coffee"

    (sent,) = suite.upstream_requests()
    prompt = "\n".join(m["content"] for m in sent["body"]["messages"])
    assert DOCUMENTS["coffee"] in prompt
    assert prompt.index(DOCUMENTS["coffee"]) < prompt.index(QUESTION)
    assert DOCUMENTS["volcanoes"] not in prompt or prompt.index(DOCUMENTS["coffee"]) < prompt.index(
        DOCUMENTS["volcanoes"]
    )


def test_other_tenant_cannot_search_the_collection(suite, unique_name):
    ingest(suite, unique_name)
    with grpc.insecure_channel(f"127.0.0.1:{suite.cfg.ports.retrieval}") as channel:
        found = retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(
            retrieval_pb2.SearchRequest(
                context=common_pb2.RequestContext(org_id="someone-else"),
                collection=unique_name,
                query=QUESTION,
                k=3,
            ),
            timeout=30,
            metadata=suite.grpc_auth("retrieval", "someone-else"),
        )
    assert list(found.chunks) == []
