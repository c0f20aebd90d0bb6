"""After a scripted mix (success, 429, guardrail block, upstream 500, timeout, cache hit, invalid
request) the gateway's and generation's counters and histograms moved by exactly what that mix
implies; a client that leaves mid-stream counts as cancelled; OpenMetrics scrapes carry exemplars
with the request's trace id; Server-Timing reports every hop of a request."""

import json
import secrets
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from services.guardrails.tests.corpus import INJECTIONS
from tests.observability_stack import Stack, delta, deltas, scrape, stack_fixture
from tests.otlp_receiver import Span
from tests.test_retrieval_chain import QUESTION, ingest
from tests.test_trace import CLIENT

MODEL = "obs-metrics"
ROUTE = "/v1/chat/completions"
# The organization of the suite's configured key (GATEWAY_ORG_ID's default).
ORG = "default"
OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


@pytest.fixture(scope="module")
def stack(suite) -> Iterator[Stack]:
    yield from stack_fixture(suite, "observability-metrics")


def chat(text: str, **extra) -> dict:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def wait_for_upstream_request(stack: Stack, count: int) -> None:
    for _ in range(200):
        if len([r for r in stack.suite.upstream_requests() if r["body"].get("model") == MODEL]) >= count:
            return
        time.sleep(0.02)
    raise AssertionError("the upstream never received the request")


def test_counters_move_by_exactly_the_scripted_mix(stack):
    gateway_metrics = f"{stack.gateway_url}/metrics"
    gw_before, gen_before = scrape(gateway_metrics), scrape(stack.generation_metrics_url)
    stack.suite.clear_upstream_requests()
    statuses = []
    with stack.client() as c:
        # 1. A plain success, and 2. a cache hit: the same deterministic request again.
        stack.script(MODEL, None)
        cacheable = chat(f"cache me please {secrets.token_hex(4)}", temperature=0)
        first = c.post(ROUTE, json=cacheable)
        again = c.post(ROUTE, json=cacheable)
        assert (first.headers["x-cache"], again.headers["x-cache"]) == ("miss", "hit")
        assert again.json()["choices"] == first.json()["choices"]
        statuses += [first.status_code, again.status_code]

        # 3. 429: a second stream while the key's one allowed stream is still open.
        stack.script(MODEL, {"stall": 1.0})
        held: dict = {}

        def hold() -> None:
            body = chat("hold the stream", stream=True, cache=False, stream_options={"include_usage": True})
            held["r"] = c.post(ROUTE, json=body)

        holder = threading.Thread(target=hold)
        holder.start()
        wait_for_upstream_request(stack, 2)
        refused = c.post(ROUTE, json=chat("one too many", stream=True, cache=False))
        holder.join(timeout=30)
        statuses += [held["r"].status_code, refused.status_code]
        assert refused.status_code == 429, refused.text

        # 4. Guardrail block on input.
        blocked = c.post(ROUTE, json=chat(INJECTIONS[0], cache=False))
        statuses.append(blocked.status_code)

        # 5. Upstream 500.
        stack.script(MODEL, {"status": 500})
        failed = c.post(ROUTE, json=chat("this one breaks", cache=False))
        statuses.append(failed.status_code)

        # 6. Timeout: the upstream stalls past the gateway's deadline.
        stack.script(MODEL, {"stall": 6})
        slow = c.post(ROUTE, json=chat("this one is slow", cache=False))
        statuses.append(slow.status_code)
        stack.script(MODEL, None)

        # 7. A request the gateway rejects before any backend sees it.
        invalid = c.post(ROUTE, json={"model": MODEL, "messages": "not a list"})
        statuses.append(invalid.status_code)
    gw_after = scrape(gateway_metrics)
    # Generation accounts a call when it ends, which for the timed-out call is when its cancel lands.
    gen_after = gen_before
    for _ in range(100):
        gen_after = scrape(stack.generation_metrics_url)
        if sum(deltas(gen_before, gen_after, "llmsuite_generation_requests_total").values()) >= 4:
            break
        time.sleep(0.05)

    assert statuses == [200, 200, 200, 429, 400, 503, 504, 400]
    chat_route = {("route", ROUTE), ("method", "POST")}
    assert {
        dict(k)["status"]: v
        for k, v in deltas(gw_before, gw_after, "llmsuite_gateway_requests_total").items()
        if chat_route <= k
    } == {"200": 3, "429": 1, "400": 2, "503": 1, "504": 1}
    assert (
        delta(
            gw_before, gw_after, "llmsuite_gateway_request_duration_seconds_count", route=ROUTE, method="POST"
        )
        == 8
    )
    assert labelled(deltas(gw_before, gw_after, "llmsuite_gateway_errors_total"), "class") == {
        ("rate_limited",): 1,
        ("guardrail_blocked",): 1,
        ("upstream_5xx",): 1,
        ("timeout",): 1,
        ("validation",): 1,
    }
    assert deltas(gw_before, gw_after, "llmsuite_gateway_rate_limited_total") == {
        frozenset({("cause", "concurrency")}): 1
    }
    assert deltas(gw_before, gw_after, "llmsuite_gateway_cache_lookups_total") == {
        frozenset({("outcome", "miss")}): 1,
        frozenset({("outcome", "hit")}): 1,
    }
    # A first token only where generation produced one: the cache miss and the held stream.
    assert deltas(gw_before, gw_after, "llmsuite_gateway_time_to_first_token_seconds_count") == {
        frozenset({("stream", "false")}): 1,
        frozenset({("stream", "true")}): 1,
    }

    # Generation saw the two completions, the 500 and the cancelled timeout; never the 429, the
    # blocked input or the cache hit.
    assert labelled(
        deltas(gen_before, gen_after, "llmsuite_generation_requests_total"), "model", "outcome"
    ) == {
        (MODEL, "completed"): 2,
        ("-", "failed:upstream_error"): 1,
        ("-", "cancelled"): 1,
    }
    assert labelled(
        deltas(gen_before, gen_after, "llmsuite_generation_upstream_attempts_total"), "deployment", "result"
    ) == {(MODEL, "ok"): 2, (MODEL, "upstream_error"): 1, (MODEL, "cancelled"): 1}
    assert labelled(
        deltas(gen_before, gen_after, "llmsuite_grpc_server_handled_total"), "grpc_method", "grpc_code"
    ) == {
        # Whole answers come from Complete, the held stream from Generate.
        ("Complete", "OK"): 1,
        ("Generate", "OK"): 1,
        ("Complete", "UNAVAILABLE"): 1,
        ("Complete", "CANCELLED"): 1,
    }
    usages = [first.json()["usage"], stream_usage(held["r"].text)]
    assert labelled(
        deltas(gen_before, gen_after, "llmsuite_generation_tokens_total"), "org", "model", "kind"
    ) == {
        (ORG, MODEL, "prompt"): sum(u["prompt_tokens"] for u in usages),
        (ORG, MODEL, "completion"): sum(u["completion_tokens"] for u in usages),
    }


def labelled(moved: dict[frozenset[tuple[str, str]], float], *names: str) -> dict[tuple[str, ...], float]:
    return {tuple(dict(k)[n] for n in names): v for k, v in moved.items()}


def stream_usage(sse: str) -> dict:
    chunks = [json.loads(line[6:]) for line in sse.splitlines() if line.startswith("data: {")]
    return chunks[-1]["usage"]


def test_a_client_that_leaves_mid_stream_counts_as_cancelled(stack):
    gateway_metrics = f"{stack.gateway_url}/metrics"
    before = scrape(gateway_metrics)
    stack.script(MODEL, {"chunks": 50, "delay": 0.2})
    try:
        with stack.client() as c:
            with c.stream("POST", ROUTE, json=chat("leave early", stream=True, cache=False)) as response:
                assert response.status_code == 200
                for line in response.iter_lines():
                    if line.startswith("data: {"):
                        break
        moved: dict = {}
        # The gateway notices the disconnect on its next write; poll until it has counted it.
        for _ in range(200):
            moved = deltas(before, scrape(gateway_metrics), "llmsuite_gateway_errors_total")
            if moved:
                break
            time.sleep(0.05)
    finally:
        stack.script(MODEL, None)
    assert labelled(moved, "class") == {("cancelled",): 1}


def exemplar_trace_ids(text: str, name: str, **labels: str) -> set[str]:
    """Trace ids of the exemplars on the samples of `name` whose labels include `labels`."""
    return {
        s.exemplar.labels["trace_id"]
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items() and s.exemplar is not None
    }


def openmetrics(url: str) -> str:
    reply = httpx.get(url, headers={"accept": OPENMETRICS}, timeout=5)
    assert reply.headers["content-type"].startswith("application/openmetrics-text")
    return reply.text


def server_timing(header: str) -> dict[str, float]:
    entries = {}
    for entry in header.split(", "):
        name, dur, desc = entry.split(";")
        assert dur.startswith("dur=") and desc.startswith('desc="') and desc.endswith('"'), entry
        entries[name] = float(dur.removeprefix("dur="))
    return entries


def client_spans(spans: list[Span], *methods: str) -> list[Span]:
    return [
        s
        for s in spans
        if s.service == "gateway" and s.kind == CLIENT and s.name.rsplit("/", 1)[-1] in methods
    ]


def test_server_timing_and_exemplars_follow_one_rag_request(stack, otlp_receiver, unique_name):
    ingest(stack.suite, unique_name)
    trace_id = secrets.token_hex(16)
    with stack.client() as c:
        reply = c.post(
            ROUTE,
            headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
            json=chat(QUESTION, cache=False, retrieval={"collection": unique_name, "k": 2}),
        )
    assert reply.status_code == 200, reply.text

    # Every hop, in order, each covering the same backend calls as the gateway's client spans.
    timings = server_timing(reply.headers["server-timing"])
    assert list(timings) == ["auth", "limits", "guardrails", "retrieval", "generation", "gateway"]
    assert timings["gateway"] == float(reply.headers["x-gateway-overhead-ms"])
    spans = otlp_receiver.wait_for(
        trace_id, lambda got: len(client_spans(got, "CheckInput", "CheckContext", "Search", "Complete")) == 4
    )
    # A client span ends in its call's done callback, which the event loop may run just after the
    # awaiting code resumed and the hop stopped its clock: on a loaded box, a fraction of a ms.
    slack_ms = 1.0
    for hop, methods in (("guardrails", ("CheckInput", "CheckContext")), ("retrieval", ("Search",))):
        called = client_spans(spans, *methods)
        assert len(called) == len(methods), (hop, [s.name for s in spans])
        # The hop's time is the wait on these calls; each span lies within that wait.
        assert timings[hop] + slack_ms >= sum(s.duration_ms for s in called), (hop, timings)

    # OpenMetrics scrapes carry this request's trace id as the exemplar of what it observed.
    gateway_text = openmetrics(f"{stack.gateway_url}/metrics")
    assert trace_id in exemplar_trace_ids(
        gateway_text, "llmsuite_gateway_request_duration_seconds_bucket", route=ROUTE, method="POST"
    )
    assert trace_id in exemplar_trace_ids(
        gateway_text, "llmsuite_gateway_time_to_first_token_seconds_bucket", stream="false"
    )
    assert exemplar_trace_ids(
        openmetrics(stack.generation_metrics_url),
        "llmsuite_generation_tokens_total",
        org=ORG,
        model=MODEL,
        kind="completion",
    ) == {trace_id}
