"""Canaries: a client API key, the upstream's key and an e-mail address planted in requests and in
the upstream's error bodies never show up in any service's log, any span attribute, any /metrics
output, or any error body a client receives."""

import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from llmsuite_common.embedded_postgres import EmbeddedPostgres
from psycopg import sql
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from services.guardrails.tests.corpus import INJECTIONS
from tests.observability_stack import UPSTREAM_KEY, Stack, stack_fixture

MODEL = "obs-canary"
ROUTE = "/v1/chat/completions"
CLIENT_KEY = "sk-canary-client-" + secrets.token_hex(12)
EMAIL = f"canary.{secrets.token_hex(4)}@example.com"
# Not services: the fake upstream records what it was sent, keys included, by design.
NOT_SERVICE_LOGS = {"fake-upstream.log"}
# Upstream statuses whose error message generation passes on to the client.
RELAYED_STATUSES = (400, 422)


@pytest.fixture(scope="module")
def stack(suite) -> Iterator[Stack]:
    yield from stack_fixture(suite, "observability-canary")


def planted_text() -> str:
    return f"My key is {CLIENT_KEY} and my mail is {EMAIL}; the upstream key is {UPSTREAM_KEY}."


def upstream_error(status: int) -> dict:
    message = f"Incorrect API key provided: {UPSTREAM_KEY}. Account {EMAIL} also sent {CLIENT_KEY}."
    return {"status": status, "body": {"error": {"message": message, "type": "invalid_request_error"}}}


def canaries(suite) -> dict[str, str]:
    return {
        "client key": CLIENT_KEY,
        "upstream key": UPSTREAM_KEY,
        "email": EMAIL,
        "suite key": suite.api_key,
    }


def leaks(text: str, suite) -> list[str]:
    return [name for name, value in canaries(suite).items() if value in text]


def test_planted_secrets_reach_no_log_span_metric_or_error_body(stack, suite, otlp_receiver):
    trace_ids = []

    def traced() -> dict[str, str]:
        trace_ids.append(secrets.token_hex(16))
        return {"traceparent": f"00-{trace_ids[-1]}-{secrets.token_hex(8)}-01"}

    def body(**extra) -> dict:
        return {
            "model": MODEL,
            "messages": [{"role": "user", "content": planted_text()}],
            # OpenAI's end-user id travels to every backend in the request context.
            "user": EMAIL,
            "cache": False,
            **extra,
        }

    error_bodies: list[str] = []
    relayed: list[str] = []
    with stack.client() as c:
        # A client key the gateway does not know, in the Authorization header and in the body.
        with stack.client(CLIENT_KEY) as stranger:
            refused = stranger.post(ROUTE, json=body(), headers=traced())
        assert refused.status_code == 401
        error_bodies.append(refused.text)

        stack.script(MODEL, None)
        usage_rows_before = usage_rows(suite)
        ok = c.post(ROUTE, json=body(), headers=traced())
        streamed = c.post(ROUTE, json=body(stream=True), headers=traced())
        assert ok.status_code == streamed.status_code == 200

        blocked = c.post(
            ROUTE,
            json={**body(), "messages": [{"role": "user", "content": f"{INJECTIONS[0]} {planted_text()}"}]},
            headers=traced(),
        )
        assert blocked.status_code == 400
        error_bodies.append(blocked.text)

        for status in (400, 401, 422, 429, 500, 503):
            stack.script(MODEL, upstream_error(status))
            for stream in (False, True):
                failed = c.post(ROUTE, json=body(stream=stream), headers=traced())
                assert failed.status_code >= 400, (status, stream, failed.text)
                (relayed if status in RELAYED_STATUSES else error_bodies).append(failed.text)

        # An upstream error mid-stream, after the first token.
        stack.script(MODEL, {**upstream_error(200), "content": ["a ", "b ", "c "], "error_after": 1})
        broken = c.post(ROUTE, json=body(stream=True), headers=traced())
        error_bodies.append(broken.text)

    # The same over WebSocket: an upstream failure ends the stream with an error frame.
    stack.script(MODEL, upstream_error(500))
    ws_url = stack.gateway_url.replace("http://", "ws://") + "/v1/chat/completions/ws"
    with connect(ws_url, additional_headers={"Authorization": f"Bearer {suite.api_key}", **traced()}) as ws:
        ws.send(json.dumps(body()))
        frames = []
        try:
            for _ in range(100):
                frames.append(ws.recv(timeout=10))
        except ConnectionClosed:
            pass
    assert any("error" in json.loads(f) for f in frames), frames
    error_bodies.extend(frames)
    stack.script(MODEL, None)

    for text in error_bodies:
        assert not leaks(text, suite), (leaks(text, suite), text)
    # Generation relays the upstream's own words for requests the client can fix (400/422),
    # with the upstream key masked; what else those words carry is the next test's subject.
    for text in relayed:
        assert UPSTREAM_KEY not in text and suite.api_key not in text, text

    # Spans: every attribute of every span of these requests, once the last one has arrived.
    otlp_receiver.wait_for(trace_ids[-1], lambda spans: any(s.service == "generation" for s in spans))
    spans = [s for t in trace_ids for s in otlp_receiver.spans(t)]
    assert {s.service for s in spans} >= {"gateway", "guardrails", "generation"}
    for span in spans:
        for key, value in span.attributes.items():
            assert not leaks(str(value), suite), (span.service, span.name, key, value)

    # Metrics: every Prometheus endpoint of the suite and of the dedicated pair.
    metric_urls = [
        f"{stack.gateway_url}/metrics",
        stack.generation_metrics_url,
        f"{suite.gateway_url}/metrics",
    ]
    metric_urls += [f"http://127.0.0.1:{env['METRICS_PORT']}/metrics" for env in suite.cfg.extra_env.values()]
    for url in metric_urls:
        text = httpx.get(url, timeout=5).text
        assert text and not leaks(text, suite), (url, leaks(text, suite))

    # Stored rows: everything the gateway keeps in PostgreSQL, once this test's usage is flushed.
    rows = usage_rows(suite)
    for _ in range(100):
        if len(rows) >= len(usage_rows_before) + 2:
            break
        time.sleep(0.05)
        rows = usage_rows(suite)
    assert len(rows) >= len(usage_rows_before) + 2
    for table, row in stored_rows(suite):
        assert not leaks(row, suite), (table, leaks(row, suite), row)

    # Logs: every line every service process wrote, the suite's and this test's pair alike.
    logs = [p for p in Path(suite.log_dir).rglob("*.log") if p.name not in NOT_SERVICE_LOGS]
    assert any(p.parent.name == stack.log_dir_name for p in logs)
    for path in logs:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            assert not leaks(line, suite), (str(path), number, leaks(line, suite), line[:500])


def stored_rows(suite) -> list[tuple[str, str]]:
    """Every row of every table in the gateway's schema, as text."""
    db = EmbeddedPostgres(str(suite.cfg.data_dir / "pgserver"))
    try:
        with psycopg.connect(db.start(), connect_timeout=10) as conn:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'gateway'"
                )
            ]
            return [
                (table, row[0])
                for table in tables
                for row in conn.execute(
                    sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier("gateway", table))
                )
            ]
    finally:
        db.release()


def usage_rows(suite) -> list[str]:
    return [row for table, row in stored_rows(suite) if table == "usage_events"]


@pytest.mark.parametrize("status", RELAYED_STATUSES)
def test_relayed_upstream_messages_carry_no_email_or_key(stack, suite, status):
    stack.script(MODEL, upstream_error(status))
    try:
        with stack.client() as c:
            failed = c.post(ROUTE, json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
    finally:
        stack.script(MODEL, None)
    assert failed.status_code == 400  # upstream 400 and 422 both reach the client as invalid requests
    assert "upstream rejected the request" in failed.json()["error"]["message"]
    assert not leaks(failed.text, suite), (leaks(failed.text, suite), failed.text)


def test_key_shaped_request_id_is_not_stored(stack, suite):
    planted = "sk-canary-rid-" + secrets.token_hex(12)
    before = usage_rows(suite)
    stack.script(MODEL, None)
    with stack.client() as c:
        ok = c.post(
            ROUTE,
            json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "cache": False},
            headers={"x-request-id": planted},
        )
    assert ok.status_code == 200
    rows = usage_rows(suite)
    for _ in range(100):
        if len(rows) > len(before):
            break
        time.sleep(0.05)
        rows = usage_rows(suite)
    assert len(rows) > len(before)
    assert not [row for row in rows if planted in row]
