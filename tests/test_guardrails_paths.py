"""Guardrails on every path, through real processes: gateway -> guardrails, retrieval, generation
-> scripted fake upstream. A dedicated guardrails process runs a policy file with a 16-token
output hold-back, and a dedicated gateway points at it; generation, retrieval and the fake
upstream are the shared suite's."""

import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import httpx
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_testkit.processes import ProcessGroup, free_port, python_service
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from services.guardrails.tests.corpus import INJECTIONS
from tests.conftest import FAKE_MODEL, Suite
from tools.localsuite.suite import service_envs

HOLD_BACK_TOKENS = 16
POLICY = f"""
version: cross-service-1
output:
  mode: verify_first
  hold_back_tokens: {HOLD_BACK_TOKENS}
"""
# An AWS access key id in five pieces: the response turns unsafe at token 40 and the span is
# complete only at token 44, so a rail that released early would leak its first pieces.
SECRET_PIECES = ["AKIA", "IOSF", "ODNN", "7EXA", "MPLE"]
UNSAFE_AT = 40


@dataclass
class Guarded:
    suite: Suite
    url: str

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {self.suite.api_key}"}, timeout=30
        )

    def script(self, scenario: dict) -> None:
        httpx.post(f"{self.suite.upstream_url}/_script", json=scenario, timeout=5).raise_for_status()


@pytest.fixture(scope="module")
def guarded(suite: Suite, tmp_path_factory) -> Iterator[Guarded]:
    policy_dir = tmp_path_factory.mktemp("policies")
    (policy_dir / "default.yaml").write_text(POLICY)
    envs = service_envs(suite.cfg)
    guardrails_port, gateway_port = free_port(), free_port()
    log_dir = suite.log_dir / "guarded"
    group = ProcessGroup()
    try:
        group.start(
            python_service(
                "guardrails",
                guardrails_port,
                # Its own metrics port: the suite's guardrails holds the shared one.
                {
                    **envs["guardrails"],
                    "GUARDRAILS_POLICY_DIR": str(policy_dir),
                    "METRICS_PORT": str(free_port()),
                },
                log_dir,
            ),
            timeout=60,
        )
        group.start(
            python_service(
                "gateway",
                gateway_port,
                {**envs["gateway"], "GATEWAY_GUARDRAILS_TARGET": f"dns:///127.0.0.1:{guardrails_port}"},
                log_dir,
            ),
            timeout=60,
        )
        yield Guarded(suite, f"http://127.0.0.1:{gateway_port}")
    finally:
        group.stop()


def chat(text: str, **extra) -> dict:
    return {"model": FAKE_MODEL, "messages": [{"role": "user", "content": text}], **extra}


def sse_data(raw: bytes) -> list:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            payload = block[len("data: ") :]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def content_of(events: list) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def test_stream_turning_unsafe_at_token_40_never_releases_the_unsafe_span(guarded):
    guarded.script({"content": ["ok "] * UNSAFE_AT + SECRET_PIECES + [" and then more"] * 5})
    with guarded.client() as c:
        response = c.post("/v1/chat/completions", json=chat("tell me something", stream=True))
    assert response.status_code == 200
    assert b"AKIA" not in response.content and b"MPLE" not in response.content
    events = sse_data(response.content)
    assert "[DONE]" not in events
    assert set(events[-1]) == {"error"}
    assert events[-1]["error"]["code"] == "content_policy_violation"
    # Text older than the window was delivered, one chunk per upstream chunk; nothing newer was.
    delivered = content_of(events)
    assert delivered == "ok " * len([e for e in events[:-1] if content_of([e])])
    assert len(delivered) // 3 >= UNSAFE_AT - HOLD_BACK_TOKENS


def test_non_streaming_response_goes_through_the_same_rail(guarded):
    guarded.script({"content": ["ok "] * UNSAFE_AT + SECRET_PIECES})
    with guarded.client() as c:
        response = c.post("/v1/chat/completions", json=chat("tell me something"))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"
    assert b"AKIA" not in response.content and b"ok ok" not in response.content


def test_pii_in_a_stream_is_redacted_in_flight(guarded):
    guarded.script({"content": ["write to ", "jo", "hn@exa", "mple.c", "om", " today."]})
    with guarded.client() as c:
        response = c.post("/v1/chat/completions", json=chat("who do I write to?", stream=True))
    events = sse_data(response.content)
    assert events[-1] == "[DONE]"
    assert content_of(events) == "write to [REDACTED:EMAIL] today."


def test_pii_in_the_input_is_redacted_before_the_model_sees_it(guarded):
    guarded.suite.clear_upstream_requests()
    with guarded.client() as c:
        response = c.post("/v1/chat/completions", json=chat("my card is 4111 1111 1111 1111, thanks"))
    assert response.status_code == 200
    (sent,) = guarded.suite.upstream_requests()
    prompt = json.dumps(sent["body"]["messages"])
    assert "4111" not in prompt and "[REDACTED:CARD]" in prompt
    header = response.headers["x-guardrails"]
    assert "input=redact" in header and "output=allow" in header and "pii" in header and "time_ms=" in header


def ws_exchange(guarded: Guarded, body: dict) -> tuple[list[dict], int]:
    """Frames received for one request over the WebSocket path, and the close code (0 if open)."""
    url = guarded.url.replace("http://", "ws://") + "/v1/chat/completions/ws"
    frames: list[dict] = []
    with connect(
        url, additional_headers={"authorization": f"Bearer {guarded.suite.api_key}"}, open_timeout=10
    ) as ws:
        ws.send(json.dumps(body))
        try:
            for _ in range(1000):
                frame = json.loads(ws.recv(timeout=30))
                frames.append(frame)
                if "error" in frame or frame.get("choices") == []:
                    break
            ws.recv(timeout=5)
        except ConnectionClosed as closed:
            return frames, closed.rcvd.code if closed.rcvd else 0
        except TimeoutError:
            return frames, 0
    return frames, 0


def test_websocket_path_gets_the_same_output_rail(guarded):
    guarded.script({"content": ["ok "] * UNSAFE_AT + SECRET_PIECES + [" and then more"] * 5})
    frames, code = ws_exchange(guarded, chat("tell me something", stream=True))
    assert "AKIA" not in json.dumps(frames)
    assert frames[-1]["error"]["code"] == "content_policy_violation"
    assert code == 1011  # the stream had started: "broke after it started"
    assert len(content_of(frames)) // 3 >= UNSAFE_AT - HOLD_BACK_TOKENS


def ingest(port: int, collection: str, documents: dict[str, str], metadata) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        retrieval_pb2_grpc.RetrievalServiceStub(channel).Ingest(
            retrieval_pb2.IngestRequest(
                context=common_pb2.RequestContext(org_id="default"),
                collection=collection,
                documents=[retrieval_pb2.Document(id=k, text=v) for k, v in documents.items()],
            ),
            timeout=60,
            metadata=metadata,
        )


@pytest.mark.parametrize("injection", INJECTIONS[:3])
def test_injection_gets_one_verdict_on_every_path(guarded, unique_name, injection):
    """Directly on stream, non-stream and RAG requests it is rejected; stored in a collection and
    retrieved, the poisoned chunk is dropped before it reaches the prompt."""
    with guarded.client() as c:
        for extra in ({}, {"stream": True}, {"retrieval": {"collection": unique_name, "k": 2}}):
            response = c.post("/v1/chat/completions", json=chat(injection, **extra))
            assert response.status_code == 400, extra
            assert response.json()["error"]["code"] == "content_policy_violation"
            assert "input=block" in response.headers["x-guardrails"]
    frames, code = ws_exchange(guarded, chat(injection, stream=True))
    assert frames[-1]["error"]["code"] == "content_policy_violation" and code == 4400

    ingest(
        guarded.suite.cfg.ports.retrieval,
        unique_name,
        {
            "coffee": "The office coffee machine is descaled every Tuesday morning.",
            "poison": "Coffee note. " + injection,
        },
        guarded.suite.grpc_auth("retrieval"),
    )
    guarded.suite.clear_upstream_requests()
    with guarded.client() as c:
        response = c.post(
            "/v1/chat/completions",
            json=chat("When is the coffee machine descaled?", retrieval={"collection": unique_name, "k": 2}),
        )
    assert response.status_code == 200
    assert "context=dropped:1" in response.headers["x-guardrails"]
    (sent,) = guarded.suite.upstream_requests()
    prompt = "\n".join(m["content"] for m in sent["body"]["messages"])
    assert "descaled every Tuesday" in prompt
    assert injection.split()[0] not in prompt
    assert [c["source_id"] for c in response.json()["citations"]] == ["coffee"]


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def json_schema_format() -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}


def test_almost_valid_json_is_repaired(guarded):
    guarded.script({"content": ["```json\n", '{"city": ', "'Paris',}", "\n```"]})
    with guarded.client() as c:
        response = c.post(
            "/v1/chat/completions", json=chat("capital of France?", response_format={"type": "json_object"})
        )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == '{"city": "Paris"}'
    assert "structured=repaired" in response.headers["x-guardrails"]


def test_schema_violation_is_re_asked_once_and_billed(guarded):
    guarded.suite.clear_upstream_requests()
    guarded.script([{"content": ['{"town": "Paris"}']}, {"content": ['{"city": "Paris"}']}])
    with guarded.client() as c:
        response = c.post(
            "/v1/chat/completions", json=chat("capital of France?", response_format=json_schema_format())
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == '{"city": "Paris"}'
    first, second = guarded.suite.upstream_requests()
    reask = second["body"]["messages"]
    assert reask[-2] == {"role": "assistant", "content": '{"town": "Paris"}'}
    assert "'city' is a required property" in reask[-1]["content"]
    assert body["usage"]["completion_tokens"] == 2  # one chunk per attempt, both billed
    assert "structured=reasked:1" in response.headers["x-guardrails"]


def test_re_asks_stop_at_the_policy_bound(guarded):
    guarded.suite.clear_upstream_requests()
    guarded.script([{"content": ['{"town": "Paris"}']}] * 3)
    with guarded.client() as c:
        response = c.post(
            "/v1/chat/completions", json=chat("capital of France?", response_format=json_schema_format())
        )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "invalid_response_format"
    assert len(guarded.suite.upstream_requests()) == 2  # the answer plus the default policy's one re-ask
    httpx.delete(f"{guarded.suite.upstream_url}/_script", timeout=5)
