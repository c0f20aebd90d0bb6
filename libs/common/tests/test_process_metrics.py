"""llmsuite_process_asyncio_tasks: the serving loop's unfinished tasks, read at scrape time, from
the metrics listener's thread too; registered once per registry."""

import asyncio

from llmsuite_common.process_metrics import ASYNCIO_TASKS, track_asyncio_tasks
from prometheus_client import CollectorRegistry


def tasks(registry: CollectorRegistry) -> float | None:
    return registry.get_sample_value(ASYNCIO_TASKS)


async def test_counts_the_loops_unfinished_tasks_from_another_thread():
    registry = CollectorRegistry()
    track_asyncio_tasks(registry)
    before = await asyncio.to_thread(tasks, registry)
    assert before is not None and before >= 1  # this test's own task
    sleepers = [asyncio.create_task(asyncio.sleep(30)) for _ in range(5)]
    await asyncio.sleep(0)
    assert await asyncio.to_thread(tasks, registry) == before + 5
    for t in sleepers:
        t.cancel()
    await asyncio.gather(*sleepers, return_exceptions=True)
    assert await asyncio.to_thread(tasks, registry) == before


def test_registered_once_per_registry_and_follows_the_new_loop():
    registry = CollectorRegistry()

    async def track() -> float | None:
        track_asyncio_tasks(registry)
        return tasks(registry)

    # A service started twice in one process (tests do): no duplicate registration.
    assert asyncio.run(track()) == 1
    assert asyncio.run(track()) == 1
    # Its loop closed: the gauge has no sample rather than a stale count.
    assert tasks(registry) is None
