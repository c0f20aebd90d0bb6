"""One trace id from the client's traceparent through every hop, with the right parent edges."""

import secrets

import httpx

from tests.conftest import FAKE_MODEL
from tests.otlp_receiver import Span
from tests.test_retrieval_chain import ingest

SERVER, CLIENT = 2, 3


EXPECTED_HOPS = {
    ("gateway", SERVER),
    ("guardrails", SERVER),
    ("retrieval", SERVER),
    ("generation", SERVER),
    ("generation", CLIENT),
}


def ancestors(span: Span, by_id: dict[str, Span]) -> list[Span]:
    out = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        out.append(span)
    return out


def all_hops(spans: list[Span]) -> bool:
    return EXPECTED_HOPS <= {(s.service, s.kind) for s in spans}


def assert_one_trace_through_every_hop(otlp_receiver, suite, trace_id: str, client_span: str) -> None:
    """gateway ← client; guardrails, retrieval, generation ← gateway; upstream HTTP ← generation."""
    spans = otlp_receiver.wait_for(trace_id, all_hops)
    assert all_hops(spans), sorted({(s.service, s.kind, s.name) for s in spans})
    by_id = {s.span_id: s for s in spans}

    roots = [s for s in spans if s.service == "gateway" and s.kind == SERVER]
    assert len(roots) == 1, [s.name for s in roots]
    (gateway_root,) = roots
    assert gateway_root.parent_span_id == client_span

    for backend, method in (
        ("guardrails", "CheckInput"),
        ("retrieval", "Search"),
        ("generation", "Generate"),
    ):
        servers = [s for s in spans if s.service == backend and s.kind == SERVER]
        assert any(s.name.endswith(f"/{method}") for s in servers), (backend, [s.name for s in servers])
        for server in servers:
            caller = by_id[server.parent_span_id]
            assert (caller.service, caller.kind) == ("gateway", CLIENT), server.name
            assert gateway_root in ancestors(caller, by_id), server.name

    (generate,) = [s for s in spans if s.service == "generation" and s.kind == SERVER]
    (sent,) = suite.upstream_requests()
    traceparent = {k.lower(): v for k, v in sent["headers"].items()}["traceparent"]
    _, sent_trace, sent_parent, _ = traceparent.split("-")
    assert sent_trace == trace_id
    upstream_call = by_id[sent_parent]
    assert (upstream_call.service, upstream_call.kind) == ("generation", CLIENT)
    assert generate in ancestors(upstream_call, by_id)


def test_one_trace_across_every_hop(suite, otlp_receiver, unique_name):
    ingest(suite, unique_name)
    suite.clear_upstream_requests()
    trace_id = secrets.token_hex(16)
    client_span = secrets.token_hex(8)
    reply = httpx.post(
        f"{suite.gateway_url}/v1/chat/completions",
        headers={
            "Authorization": f"Bearer {suite.api_key}",
            "traceparent": f"00-{trace_id}-{client_span}-01",
        },
        json={
            "model": FAKE_MODEL,
            "stream": True,
            "messages": [{"role": "user", "content": "What causes tides?"}],
            "retrieval": {"collection": unique_name, "k": 2},
        },
        timeout=60,
    )
    assert reply.status_code == 200 and reply.text.rstrip().endswith("data: [DONE]")

    assert_one_trace_through_every_hop(otlp_receiver, suite, trace_id, client_span)
