"""The request-log writer against a real PostgreSQL: a failed write loses nothing, a full queue refuses
new requests with 503 instead of dropping rows, and rows past retention are deleted."""

import asyncio
import secrets
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import psycopg
from gateway_service.db import migrate
from gateway_service.edge.request_log import RequestEntry
from gateway_service.edge.request_log_writer import RequestLogWriter
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool

from services.gateway.tests.lock_waits import wait_for_lock_waiter

CHAT = "/v1/chat/completions"
WAIT_SECONDS = 20


def chat(model: str, text: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "cache": False}


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def stored_ids(dsn: str, request_ids: list[str]) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT request_id, completion_tokens FROM gateway.usage_events WHERE request_id = ANY(%s)",
            (request_ids,),
        ).fetchall()
    return dict(rows)


async def test_a_failed_write_keeps_its_rows_and_recovers(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(gateway_database_url=postgres_dsn, gateway_usage_flush_seconds=0.05)
    parked = "usage_events_parked_" + secrets.token_hex(3)
    sent: list[str] = []
    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        # The table disappears for a while: every batch write fails until it is back.
        admin.execute(f"ALTER TABLE gateway.usage_events RENAME TO {parked}")
        try:
            async with gw.client() as http:
                for i in range(5):
                    response = await http.post(CHAT, json=chat(gw.model, f"question number {i}"))
                    assert response.status_code == 200
                    sent.append(response.headers["x-request-id"])
                for _ in range(WAIT_SECONDS * 20):
                    if await metric(http, "llmsuite_gateway_usage_write_failures_total") >= 2:
                        break
                    await asyncio.sleep(0.05)
                assert await metric(http, "llmsuite_gateway_usage_write_failures_total") >= 2
                assert await metric(http, "llmsuite_gateway_usage_queue_depth") == 5
        finally:
            admin.execute(f"ALTER TABLE gateway.{parked} RENAME TO usage_events")

    async with gw.client() as http:
        for _ in range(WAIT_SECONDS * 20):
            if await metric(http, "llmsuite_gateway_usage_queue_depth") == 0:
                break
            await asyncio.sleep(0.05)
        assert await metric(http, "llmsuite_gateway_usage_rows_written_total") == 5
    stored = stored_ids(postgres_dsn, sent)
    assert set(stored) == set(sent) and all(tokens > 0 for tokens in stored.values())


async def test_a_full_queue_refuses_new_requests_with_503_and_drops_nothing(
    start_gateway, postgres_dsn, fake
):
    # Nothing is written on its own during the test: the queue only grows.
    gw = await start_gateway(
        gateway_database_url=postgres_dsn, gateway_usage_flush_seconds=3600, gateway_usage_queue_max=3
    )
    sent = []
    async with gw.client() as http:
        for i in range(3):
            response = await http.post(CHAT, json=chat(gw.model, f"fill {i}"))
            assert response.status_code == 200
            sent.append(response.headers["x-request-id"])
        refused = await http.post(CHAT, json=chat(gw.model, "one too many"))
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
        assert await metric(http, "llmsuite_gateway_usage_queue_depth") == 3

        # Reading a request writes what is queued; then requests are admitted again.
        assert (await http.get(f"/v1/requests/{sent[0]}")).status_code == 200
        assert await metric(http, "llmsuite_gateway_usage_queue_depth") == 0
        assert (await http.post(CHAT, json=chat(gw.model, "room again"))).status_code == 200
    assert set(stored_ids(postgres_dsn, sent)) == set(sent)


def entry(request_id: str, age: timedelta) -> RequestEntry:
    return RequestEntry(
        "retention-org", "key", "", "m", 1, 1, 0.0, request_id, created_at=datetime.now(UTC) - age
    )


async def test_rows_past_retention_are_deleted_periodically(postgres_dsn):
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        await migrate(pool)
        db = SimpleNamespace(pool=pool)
        tag = secrets.token_hex(4)
        old = [f"old-{tag}-{i}" for i in range(7)]
        recent = [f"recent-{tag}-{i}" for i in range(3)]
        # Written with retention off, so only the second writer's loop deletes.
        keeper = RequestLogWriter(db, flush_seconds=3600, queue_max=100)
        for rid in old:
            keeper.put(entry(rid, timedelta(days=31)))
        for rid in recent:
            keeper.put(entry(rid, timedelta(days=29)))
        assert await keeper.flush() == 10

        writer = RequestLogWriter(
            db, flush_seconds=3600, queue_max=100, retention_days=30, retention_interval_seconds=0.05
        )
        writer.start()
        try:
            remaining = old + recent
            for _ in range(WAIT_SECONDS * 20):
                remaining = list(stored_ids(postgres_dsn, old + recent))
                if not set(remaining) & set(old):
                    break
                await asyncio.sleep(0.05)
        finally:
            await writer.stop(timeout=5)
        assert sorted(remaining) == sorted(recent)


async def test_delete_expired_works_in_batches_and_zero_keeps_everything(postgres_dsn):
    from gateway_service.edge.request_log import delete_expired

    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        await migrate(pool)
        writer = RequestLogWriter(SimpleNamespace(pool=pool), flush_seconds=3600, queue_max=100)
        tag = secrets.token_hex(4)
        ids = [f"batch-{tag}-{i}" for i in range(5)]
        for rid in ids:
            writer.put(entry(rid, timedelta(days=400)))
        await writer.flush()
        assert await delete_expired(pool, 0) == 0
        assert len(stored_ids(postgres_dsn, ids)) == 5
        assert await delete_expired(pool, 365, batch=2) >= 5
        assert stored_ids(postgres_dsn, ids) == {}


# --- rows the database cannot take ---------------------------------------------------------------------


async def wait_stored(dsn: str, request_ids: list[str]) -> dict[str, int]:
    stored: dict[str, int] = {}
    for _ in range(WAIT_SECONDS * 20):
        stored = stored_ids(dsn, request_ids)
        if set(stored) == set(request_ids):
            break
        await asyncio.sleep(0.05)
    return stored


async def test_a_nul_in_an_answer_is_stored_replaced_and_later_rows_keep_flowing(
    start_gateway, postgres_dsn, fake
):
    gw = await start_gateway(gateway_database_url=postgres_dsn, gateway_usage_flush_seconds=0.05)
    # The model answers with a NUL: the request is served, and its row must not jam the log.
    fake.script({"content": ["bad\u0000answer. ", "more"]})
    async with gw.client() as http:
        nul = await http.post(CHAT, json=chat(gw.model, "a question"))
        assert nul.status_code == 200
        assert "\u0000" in nul.json()["choices"][0]["message"]["content"]
        later = await http.post(CHAT, json=chat(gw.model, "a later question"))
        assert later.status_code == 200
        sent = [nul.headers["x-request-id"], later.headers["x-request-id"]]
        assert set(await wait_stored(postgres_dsn, sent)) == set(sent)

        usage = await http.get("/v1/usage")
        assert usage.status_code == 200, usage.text
        assert usage.json()["object"] == "list"
        assert await metric(http, "llmsuite_gateway_usage_rows_sanitized_total") == 1
        assert await metric(http, "llmsuite_gateway_usage_write_failures_total") == 0
        assert await metric(http, "llmsuite_gateway_usage_queue_depth") == 0
        stored = (await http.get(f"/v1/requests/{sent[0]}")).json()
    assert "bad\ufffdanswer" in stored["summary"] and "\u0000" not in stored["summary"]


def logged_entry(request_id: str, **changes) -> RequestEntry:
    values = {
        "org_id": "bad-rows-org",
        "key_id": "key",
        "user_id": "",
        "model": "m",
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "cost_usd": 0.0,
        "request_id": request_id,
        "log_policy": "full",
        "messages": (("user", "a question"),),
        "answer": "an answer",
        **changes,
    }
    return RequestEntry(**values)


def counter(metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels or None) or 0.0


async def test_unstorable_text_is_replaced_and_a_refused_row_is_dropped_alone(postgres_dsn, caplog):
    from gateway_service.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        await migrate(pool)
        db = SimpleNamespace(pool=pool)
        writer = RequestLogWriter(db, flush_seconds=3600, queue_max=100, metrics=metrics)
        tag = secrets.token_hex(4)
        good = [f"good-{tag}-{i}" for i in range(5)]
        refused = f"refused-{tag}"
        writer.put(logged_entry(good[0], messages=(("user", "nul \u0000 here"),)))
        writer.put(logged_entry(good[1], answer="lone \ud800 surrogate", model="m\u0000"))
        writer.put(logged_entry(good[2]))
        # Out of range for the integer column: no replacement can make this row storable.
        writer.put(logged_entry(refused, prompt_tokens=2**40, messages=(("user", "private words"),)))
        writer.put(logged_entry(good[3]))
        writer.put(logged_entry(good[4]))
        assert await writer.flush() == 5
        assert writer.depth == 0
        assert set(stored_ids(postgres_dsn, good + [refused])) == set(good)
        assert counter(metrics, "llmsuite_gateway_usage_rows_sanitized_total") == 2
        assert counter(metrics, "llmsuite_gateway_usage_rows_dropped_total", reason="rejected") == 1
        assert counter(metrics, "llmsuite_gateway_usage_rows_written_total") == 5
        # The refused row is named by its request id; its content never reaches the log.
        assert any(getattr(r, "request_id", None) == refused for r in caplog.records)
        assert "private words" not in caplog.text

        # The writer goes on: the next rows are written as usual.
        writer.put(logged_entry(f"after-{tag}"))
        assert await writer.flush() == 1
        with psycopg.connect(postgres_dsn) as conn:
            row = conn.execute(
                "SELECT model, conversation FROM gateway.usage_events WHERE request_id = %s", (good[1],)
            ).fetchone()
    assert row[0] == "m\ufffd" and row[1]["answer"] == "lone \ufffd surrogate"


async def test_stop_gives_up_at_its_deadline_when_the_database_hangs(postgres_dsn, caplog):
    from gateway_service.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    async with AsyncConnectionPool(postgres_dsn, min_size=1, max_size=2, open=False) as pool:
        await migrate(pool)
        db = SimpleNamespace(pool=pool)
        writer = RequestLogWriter(db, flush_seconds=0.05, queue_max=100, metrics=metrics)
        tag = secrets.token_hex(4)
        ids = [f"hung-{tag}-{i}" for i in range(3)]
        with psycopg.connect(postgres_dsn) as locker:
            # Every insert now waits on this lock, for as long as the test holds it.
            locker.execute("LOCK TABLE gateway.usage_events IN ACCESS EXCLUSIVE MODE")
            writer.start()
            for rid in ids:
                writer.put(logged_entry(rid, messages=(("user", "words never logged"),)))
            await wait_for_lock_waiter(postgres_dsn)  # the write loop is blocked inside its insert
            started = asyncio.get_running_loop().time()
            await writer.stop(timeout=1.0)
            took = asyncio.get_running_loop().time() - started
            locker.rollback()
    assert took < 2.5, took
    assert writer.depth == 0
    assert counter(metrics, "llmsuite_gateway_usage_rows_dropped_total", reason="shutdown") == 3
    assert stored_ids(postgres_dsn, ids) == {}
    dropped = [r for r in caplog.records if r.getMessage() == "request log rows not written before exit"]
    assert dropped and dropped[0].rows == 3
    assert "words never logged" not in caplog.text
