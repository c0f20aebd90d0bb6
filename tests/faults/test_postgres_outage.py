"""PostgreSQL (the embedded server behind the gateway's keys and request log and retrieval's
vectors) stopped for 10 s under the mixed load, then started again: chats whose key the gateways
hold in their cache go on being served; the request-log rows of the outage are written once it
returns (counted); retrieval answers UNAVAILABLE fast (a chat naming a collection gets 503) and
serves again without a restart."""

import asyncio
import time

import httpx

from tests.faults.harness import MODEL
from tests.faults.load import Balancer, Load, report, under_load, wait_for_rows

OUTAGE_SECONDS = 10.0
RETRIEVAL = ("retrieval", "retrieval-stream")
# A refused retrieval chat takes this long at most (the pool's timeout is 5 s).
FAST_SECONDS = 1.5


async def uncached_key_and_admin(harness, key: str) -> tuple[httpx.Response, httpx.Response]:
    """A chat with a key no gateway has looked up yet, and the admin API: both need the database."""
    url = harness.gateways[0].url
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "new key"}]}
        return await asyncio.gather(
            client.post("/v1/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}),
            client.get("/v1/admin/keys", headers={"authorization": f"Bearer {harness.admin_key}"}),
        )


async def test_postgres_down_for_ten_seconds(harness, record):
    marks: dict[str, float] = {}
    seen: dict[str, tuple[httpx.Response, httpx.Response]] = {}
    admin = {"authorization": f"Bearer {harness.admin_key}"}
    created = httpx.post(
        f"{harness.gateways[0].url}/v1/admin/keys", json={"role": "member", "name": "unused"}, headers=admin
    )
    assert created.status_code == 201, created.text
    uncached = created.json()["key"]

    async def outage(balancer: Balancer, load: Load) -> None:
        await asyncio.to_thread(harness.postgres.stop)
        marks["down"] = time.monotonic()
        seen["during"] = await uncached_key_and_admin(harness, uncached)
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - marks["down"]))
        await asyncio.to_thread(harness.postgres.start)
        marks["up"] = time.monotonic()
        # The rows of every request answered so far, the outage's included: how soon are they in?
        owed = [o.request_id for o in load.outcomes if o.row_owed]
        found, seconds = await wait_for_rows(harness, owed, timeout=30)
        marks["rows_owed"], marks["rows_in"], marks["rows_seconds"] = len(owed), len(found), seconds

    load, _ = await under_load(harness, harness.load_key, outage, tail=2.0)
    outcomes = load.outcomes
    down, up = marks["down"], marks["up"]
    during = [o for o in outcomes if down < o.started < up]
    retrieval_failed = [o for o in outcomes if o.kind in RETRIEVAL and not o.ok]
    back = min(o.ended for o in outcomes if o.kind in RETRIEVAL and o.ok and o.started > down)
    retrieval_recovery = max(0.0, back - up)
    rows_recovery = marks["rows_seconds"]
    slowest = max((o.seconds for o in retrieval_failed), default=0.0)
    notes = [
        f"{len(during)} requests started during the outage, {sum(o.ok for o in during)} served",
        f"retrieval chats refused: {len(retrieval_failed)}, all 503 in at most {slowest:.2f} s; "
        f"served again {retrieval_recovery:.1f} s after PostgreSQL answered",
        f"request log: {marks['rows_in']} of the {marks['rows_owed']} rows owed when PostgreSQL came "
        f"back were in the table {rows_recovery:.1f} s later",
        "during the outage, a key no gateway had cached and the admin API: "
        + ", ".join(f"{r.status_code} {r.json()['error']['code']}" for r in seen["during"]),
    ]
    result, missing = await report(
        harness,
        "PostgreSQL down 10 s",
        outcomes,
        recovery_seconds=max(retrieval_recovery, rows_recovery),
        notes=notes,
    )
    record.append(result)
    print("\n" + result.table())
    # A key not in any cache, and the admin API: 503 (with Retry-After) while it is down.
    for response in seen["during"]:
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] in ("database_unavailable", "database_busy")
        assert response.headers["retry-after"]
    # Chats whose key is cached: served throughout.
    assert [o for o in outcomes if o.kind not in RETRIEVAL and not o.ok] == []
    # Retrieval: refused fast, with a status a client can retry on; then served again.
    assert {(o.status, o.code) for o in retrieval_failed} <= {
        (503, "unavailable"),
        (503, "retrieval_unavailable"),
    }
    assert slowest < FAST_SECONDS
    assert all(o.ok for o in outcomes if o.kind in RETRIEVAL and o.started > back)
    assert retrieval_recovery < 3.0
    # The outage's rows are written once it returns: none lost.
    assert marks["rows_in"] == marks["rows_owed"]
    assert result.rows_lost == 0, sorted(missing)[:5]
    assert result.truncated == 0
    assert result.duplicate_upstream_attempts == 0
