"""Every service restarted one replica at a time under the mixed load: SIGTERM, wait for it to
drain and exit, start a new one on its port, wait until it serves, next. Nothing fails, no stream
is cut, every request has its request-log row, and no request reaches the upstream twice."""

import asyncio
import time

import httpx

from tests.faults.harness import BACKENDS, Harness, Replica
from tests.faults.load import Balancer, Load, report, under_load

# How long after its SIGTERM a gateway leaves the balancer, as an endpoint removal spreads.
ENDPOINT_DELAY = 0.2


async def restart(replica: Replica, balancer: Balancer) -> dict[str, float]:
    started = time.monotonic()
    replica.terminate()
    if replica.service == "gateway":
        await asyncio.sleep(ENDPOINT_DELAY)
        await balancer.leave(replica)
    code = await asyncio.to_thread(replica.wait_exit, 60)
    assert code == 0, f"{replica.name} exited with {code}"
    exited = time.monotonic()
    replica.start()
    await asyncio.to_thread(replica.wait_ready)
    if replica.service == "gateway":
        await balancer.join(replica)
    return {"at": started, "drain": exited - started, "start": time.monotonic() - exited}


async def watch_readiness(harness: Harness, restarting: set[str], seen: list[tuple[str, int, str]]) -> None:
    """/readyz of every gateway not being restarted itself, four times a second: a backend's
    rollout must not take a gateway out of its Service. Each answer is kept with what was
    restarting at the time and, when not ready, the gateway's reason."""
    async with httpx.AsyncClient(timeout=2, trust_env=False) as client:
        while True:
            for gateway in harness.gateways:
                if gateway.name in restarting:
                    continue
                during = ",".join(sorted(restarting))
                try:
                    reply = await client.get(f"{gateway.url}/readyz")
                    status, why = reply.status_code, reply.text[:200] if reply.status_code != 200 else ""
                except httpx.HTTPError as err:
                    status, why = 0, repr(err)
                if gateway.name not in restarting:
                    seen.append((gateway.name, status, f"while restarting {during}: {why}" if why else ""))
            await asyncio.sleep(0.25)


async def test_rolling_restart_of_every_service_under_load(harness: Harness, record):
    steps: dict[str, dict[str, float]] = {}
    restarting: set[str] = set()
    readiness: list[tuple[str, int, str]] = []

    async def roll(balancer: Balancer, load: Load) -> float:
        started = time.monotonic()
        watcher = asyncio.create_task(watch_readiness(harness, restarting, readiness))
        try:
            for name in (*BACKENDS, "gateway"):
                replicas = harness.replicas[name] if name != "gateway" else harness.gateways
                for replica in replicas:
                    restarting.add(replica.name)
                    steps[replica.name] = await restart(replica, balancer)
                    restarting.discard(replica.name)
        finally:
            watcher.cancel()
        return time.monotonic() - started

    load, seconds = await under_load(harness, harness.load_key, roll)
    notes = [
        f"the roll took {seconds:.1f} s: "
        + ", ".join(
            f"{n} drained in {s['drain']:.1f} s, serving {s['start']:.1f} s later" for n, s in steps.items()
        )
    ]
    not_ready = [(name, status, why) for name, status, why in readiness if status != 200]
    notes.append(f"/readyz of the gateways not restarting: {len(readiness)} checks, {len(not_ready)} not 200")
    result, missing = await report(
        harness, "Rolling restart of every service", load.outcomes, recovery_seconds=None, notes=notes
    )
    record.append(result)
    print("\n" + result.table())
    assert result.failed == 0, result.failures
    assert result.truncated == 0
    assert result.rows_lost == 0, sorted(missing)[:5]
    assert result.duplicate_upstream_attempts == 0
    assert not_ready == []
