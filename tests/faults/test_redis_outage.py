"""Redis (the replicas' shared limits, spend and idempotency keys) stopped for 10 s under the mixed
load, then started again, empty. The documented failure modes hold (services/gateway/README.md,
"Rate limits"): with GATEWAY_RATE_LIMIT_FAILURE_MODE=open (the default, the two gateways under
load) requests are admitted unlimited while Redis is down; with `closed` (a third gateway, probed
alone) they get 503 limiter_unavailable with Retry-After. Once Redis answers (and the limiter's
one-second pause is over) limits are exact again: a burst against a key's limit of L a minute
admits exactly L across both gateways, no more."""

import asyncio
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from llmsuite_testkit.processes import free_port

from tests.faults.harness import MODEL, PROBE_RPM, WINDOW_SECONDS, Harness, Replica
from tests.faults.load import Balancer, Load, report, under_load

OUTAGE_SECONDS = 10.0
# The limiter leaves a Redis found down alone for a second (services/gateway/README.md).
LIMITER_PAUSE_SECONDS = 1.0


async def burst(harness: Harness, gateways: list[Replica], n: int) -> list[httpx.Response]:
    """n chats with the probe key (PROBE_RPM a minute), spread over `gateways`, all at once."""
    targets = itertools.cycle(gateways)
    headers = {"authorization": f"Bearer {harness.probe_key}"}
    async with httpx.AsyncClient(headers=headers, timeout=30, trust_env=False) as client:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "probe"}]}
        return await asyncio.gather(
            *(client.post(f"{next(targets).url}/v1/chat/completions", json=body) for _ in range(n))
        )


def statuses(responses: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for r in responses:
        counted[r.status_code] = counted.get(r.status_code, 0) + 1
    return counted


@dataclass
class ClosedGateway:
    replica: Replica
    # A key with a limit it never reaches: the limiter asks Redis about each of its requests.
    key: str


@pytest.fixture(scope="module")
def closed_gateway(harness: Harness) -> Iterator[ClosedGateway]:
    env = {**harness.gateways[0].env, "GATEWAY_RATE_LIMIT_FAILURE_MODE": "closed"}
    replica = Replica("gateway", len(harness.gateways), free_port(), env, harness.log_dir)
    replica.start()
    try:
        replica.wait_ready()
        admin = {"authorization": f"Bearer {harness.admin_key}"}
        created = httpx.post(
            f"{replica.url}/v1/admin/keys",
            json={"role": "member", "name": "closed-probe", "settings": {"rpm": 10_000}},
            headers=admin,
            timeout=30,
            trust_env=False,
        )
        assert created.status_code == 201, created.text
        yield ClosedGateway(replica, created.json()["key"])
    finally:
        replica.stop()


async def idempotent(harness: Harness) -> httpx.Response:
    """A chat with an Idempotency-Key: whether it ran before cannot be known without Redis."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.post(
            f"{harness.gateways[0].url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "once"}]},
            headers={"authorization": f"Bearer {harness.load_key}", "idempotency-key": "fault-redis-1"},
        )


async def probe_closed(gateway: ClosedGateway) -> httpx.Response:
    """One chat through the gateway in `closed` mode."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        return await client.post(
            f"{gateway.replica.url}/v1/chat/completions",
            json={"model": MODEL, "messages": [{"role": "user", "content": "closed?"}]},
            headers={"authorization": f"Bearer {gateway.key}"},
        )


async def test_redis_down_for_ten_seconds(harness: Harness, record, closed_gateway: ClosedGateway):
    marks: dict[str, float] = {}
    seen: dict[str, object] = {}

    async def outage(balancer: Balancer, load: Load) -> None:
        before = await burst(harness, harness.gateways, 3 * PROBE_RPM)
        seen["before"] = statuses(before)
        assert (await probe_closed(closed_gateway)).status_code == 200
        await asyncio.to_thread(harness.redis.stop)
        marks["down"] = time.monotonic()
        await asyncio.sleep(1.0)
        seen["during"] = statuses(await burst(harness, harness.gateways, 3 * PROBE_RPM))
        seen["closed_during"] = await probe_closed(closed_gateway)
        seen["idempotent_during"] = await idempotent(harness)
        await asyncio.sleep(OUTAGE_SECONDS - (time.monotonic() - marks["down"]))
        await asyncio.to_thread(harness.redis.start)
        marks["up"] = time.monotonic()
        # Until the `closed` gateway admits again: it can only once its limiter uses Redis again.
        while (await probe_closed(closed_gateway)).status_code != 200:
            assert time.monotonic() - marks["up"] < 10, "the gateway never used Redis again"
            await asyncio.sleep(0.1)
        marks["used"] = time.monotonic()
        await asyncio.sleep(max(0.0, LIMITER_PAUSE_SECONDS + 0.5 - (time.monotonic() - marks["up"])))
        seen["after"] = statuses(await burst(harness, harness.gateways, 3 * PROBE_RPM))

    load, _ = await under_load(harness, harness.load_key, outage, tail=1.0)
    recovery = marks["used"] - marks["up"]
    closed_during = seen["closed_during"]
    assert isinstance(closed_during, httpx.Response)
    notes = [
        f"probe key (limit {PROBE_RPM} per {WINDOW_SECONDS} s window), bursts of {3 * PROBE_RPM} over both gateways: before "
        f"{seen['before']}, during the outage {seen['during']}, after {seen['after']}",
        f"a gateway in `closed` mode during the outage: {closed_during.status_code} "
        f"{closed_during.json()['error']['code']}, Retry-After {closed_during.headers.get('retry-after')}",
        f"the `closed` gateway admitted again {recovery:.2f} s after Redis answered",
        "an Idempotency-Key request during the outage: "
        f"{seen['idempotent_during'].status_code} {seen['idempotent_during'].json()['error']['code']}",
    ]
    result, missing = await report(
        harness, "Redis down 10 s", load.outcomes, recovery_seconds=recovery, notes=notes
    )
    record.append(result)
    print("\n" + result.table())
    # Exact before, unlimited while down (open), exact again after: no overshoot.
    assert seen["before"] == {200: PROBE_RPM, 429: 2 * PROBE_RPM}
    assert seen["during"] == {200: 3 * PROBE_RPM}
    assert seen["after"] == {200: PROBE_RPM, 429: 2 * PROBE_RPM}
    assert closed_during.status_code == 503 and closed_during.json()["error"]["code"] == "limiter_unavailable"
    assert int(closed_during.headers["retry-after"]) >= 1
    idempotent_during = seen["idempotent_during"]
    assert isinstance(idempotent_during, httpx.Response)
    assert idempotent_during.status_code == 503
    assert idempotent_during.json()["error"]["code"] == "idempotency_unavailable"
    # The load (open mode, a key without limits): served throughout.
    assert result.failed == 0, result.failures
    assert result.rows_lost == 0, sorted(missing)[:5]
    assert result.duplicate_upstream_attempts == 0
