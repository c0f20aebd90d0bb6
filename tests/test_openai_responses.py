"""The official openai client's Responses API against the gateway, through the real chain (gateway,
guardrails, retrieval and generation as processes, the scripted fake upstream): create (whole and
streamed, and the responses.stream helper), retrieve, delete, previous_response_id, retrieval
citations as annotations, the client's exception classes, and every body and event validated
against OpenAI's published OpenAPI document."""

import secrets

import grpc
import httpx
import openai
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

from tests.conftest import FAKE_MODEL
from tests.schemas.openai_openapi import assert_valid


@pytest.fixture
def client(suite):
    return openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=suite.api_key, max_retries=0)


def new_key(suite, **settings) -> str:
    """A member key of a new organization."""
    org = "resp-" + secrets.token_hex(4)
    headers = {"authorization": f"Bearer {suite.api_key}"}
    with httpx.Client(base_url=suite.gateway_url, headers=headers, timeout=30) as root:
        assert root.post("/v1/admin/orgs", json={"id": org}).status_code == 201
        created = root.post("/v1/admin/keys", json={"org_id": org, "role": "member", "settings": settings})
    assert created.status_code == 201, created.text
    return created.json()["key"]


def test_create_retrieve_chain_and_delete(client, suite):
    suite.clear_upstream_requests()
    first = client.responses.create(model=FAKE_MODEL, instructions="Be brief.", input="My name is Ada.")
    assert_valid("Response", first.model_dump(mode="json", exclude_unset=True))
    assert first.status == "completed" and first.output_text == "You said: My name is Ada."
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens > 0

    second = client.responses.create(model=FAKE_MODEL, previous_response_id=first.id, input="Who am I?")
    assert suite.upstream_requests()[-1]["body"]["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "Who am I?"},
    ]
    kept = client.responses.retrieve(second.id)
    assert kept.id == second.id and kept.previous_response_id == first.id
    assert kept.output_text == second.output_text

    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(first.id)
    assert_valid("ErrorResponse", info.value.response.json())
    # The follow-up was kept with its whole conversation: it still continues after the delete.
    client.responses.create(model=FAKE_MODEL, previous_response_id=second.id, input="Thanks.")
    assert len(suite.upstream_requests()[-1]["body"]["messages"]) == 5


def test_stream_events_and_the_stream_helper(client, suite):
    with httpx.Client(base_url=suite.gateway_url, timeout=30) as http:
        raw = http.post(
            "/v1/responses",
            headers={"authorization": f"Bearer {suite.api_key}"},
            json={"model": FAKE_MODEL, "input": "Name three colours.", "stream": True},
        )
    events = []
    for block in raw.text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if lines:
            event = httpx.Response(200, content=lines[1].removeprefix("data: ")).json()
            assert lines[0] == f"event: {event['type']}"
            assert_valid("ResponseStreamEvent", event)
            events.append(event)
    types = [e["type"] for e in events]
    assert types[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert types[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert types.count("response.output_text.delta") >= 2
    assert [e["sequence_number"] for e in events] == list(range(len(events)))

    streamed = client.responses.create(model=FAKE_MODEL, input="Name four colours.", stream=True)
    deltas = [e.delta for e in streamed if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "You said: Name four colours."

    with client.responses.stream(model=FAKE_MODEL, input="Name five colours.") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "You said: Name five colours."
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_the_clients_exception_classes(client, suite):
    with pytest.raises(openai.AuthenticationError) as unauthenticated:
        openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key="sk-wrong", max_retries=0).responses.create(
            model=FAKE_MODEL, input="hi"
        )
    assert unauthenticated.value.status_code == 401

    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_" + "0" * 48)
    ours = client.responses.create(model=FAKE_MODEL, input="ours")
    theirs = openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=new_key(suite), max_retries=0)
    with pytest.raises(openai.NotFoundError) as other_org:
        theirs.responses.retrieve(ours.id)
    with pytest.raises(openai.NotFoundError):
        theirs.responses.delete(ours.id)
    assert other_org.value.body["code"] == "not_found"

    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=FAKE_MODEL, input="hi", tools=[{"type": "web_search"}])
    assert refused.value.body["param"] == "tools" and "web_search" in refused.value.body["message"]

    limited = openai.OpenAI(base_url=f"{suite.gateway_url}/v1", api_key=new_key(suite, rpm=1), max_retries=0)
    limited.responses.create(model=FAKE_MODEL, input="one")
    with pytest.raises(openai.RateLimitError) as too_many:
        limited.responses.create(model=FAKE_MODEL, input="two")
    assert too_many.value.body["code"] == "key_rpm" and too_many.value.response.headers["retry-after"]
    for err in (unauthenticated, other_org, refused, too_many):
        assert_valid("ErrorResponse", err.value.response.json())


def test_a_guardrail_block_mid_stream_is_response_failed_and_the_upstream_is_cancelled(suite):
    script = {"content": ["ok "] * 3 + ["AKIAIOSFODNN7EXAMPLE "] + ["more "] * 44, "delay": 0.05}
    httpx.post(f"{suite.upstream_url}/_script", json=script, timeout=5).raise_for_status()
    httpx.delete(f"{suite.upstream_url}/_connections", timeout=5)
    with httpx.Client(base_url=suite.gateway_url, timeout=30) as http:
        raw = http.post(
            "/v1/responses",
            headers={"authorization": f"Bearer {suite.api_key}"},
            json={"model": FAKE_MODEL, "input": "tell me", "stream": True},
        )
    assert "AKIA" not in raw.text
    assert "event: error\n" in raw.text and raw.text.rstrip().split("\n")[-2] == "event: response.failed"
    assert "response.completed" not in raw.text and '"content_policy_violation"' in raw.text
    connections = httpx.get(f"{suite.upstream_url}/_connections", timeout=5).json()["connections"]
    assert connections[-1]["closed_by"] == "client" and connections[-1]["chunks_sent"] < 48


DOCUMENTS = {
    "https://docs.example.com/coffee": "The office coffee machine is descaled every Tuesday morning.",
    "tides.txt": "Tides are caused mainly by the gravitational pull of the Moon on the oceans.",
}


def test_retrieval_citations_come_back_as_annotations(client, suite, unique_name):
    with grpc.insecure_channel(f"127.0.0.1:{suite.cfg.ports.retrieval}") as channel:
        retrieval_pb2_grpc.RetrievalServiceStub(channel).Ingest(
            retrieval_pb2.IngestRequest(
                context=common_pb2.RequestContext(org_id="default"),
                collection=unique_name,
                documents=[retrieval_pb2.Document(id=k, text=v) for k, v in DOCUMENTS.items()],
            ),
            timeout=60,
            metadata=suite.grpc_auth("retrieval"),
        )
    reply = client.responses.create(
        model=FAKE_MODEL,
        input="When is the coffee machine descaled?",
        extra_body={"retrieval": {"collection": unique_name, "k": 2}},
    )
    assert_valid("Response", reply.model_dump(mode="json", exclude_unset=True))
    cited = reply.output[0].content[0].annotations
    assert cited[0].type == "url_citation" and cited[0].url == "https://docs.example.com/coffee"
    assert {a.type for a in cited} == {"url_citation", "file_citation"}
    assert next(a for a in cited if a.type == "file_citation").filename == "tides.txt"

    with client.responses.stream(
        model=FAKE_MODEL,
        input="When is the coffee machine descaled?",
        extra_body={"retrieval": {"collection": unique_name, "k": 2}},
    ) as stream:
        added = [e.annotation for e in stream if e.type == "response.output_text.annotation.added"]
    assert [a["url"] if isinstance(a, dict) else getattr(a, "url", None) for a in added][0] == cited[0].url
