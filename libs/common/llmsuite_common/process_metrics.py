"""Process gauges the default process collector lacks: the asyncio tasks of the service's loop.

`llmsuite_process_asyncio_tasks` counts the tasks of the event loop a service serves on that are not
done yet, read when /metrics is scraped (no bookkeeping per task). A count that keeps growing under a
steady load is a leak: tasks started and never awaited or cancelled (`make soak` watches it)."""

import asyncio
import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

ASYNCIO_TASKS = "llmsuite_process_asyncio_tasks"


class AsyncioTasks(Collector):
    """The not-yet-done tasks of one event loop. Safe to collect from another thread (the gRPC
    services' metrics listener): asyncio.all_tasks takes a copy of the task set."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(ASYNCIO_TASKS, "asyncio tasks of the serving event loop not done yet.")
        loop = self.loop
        if loop is not None and not loop.is_closed():
            gauge.add_metric([], len(asyncio.all_tasks(loop)))
        yield gauge


_collectors: "weakref.WeakKeyDictionary[CollectorRegistry, AsyncioTasks]" = weakref.WeakKeyDictionary()


def track_asyncio_tasks(
    registry: CollectorRegistry = REGISTRY, loop: asyncio.AbstractEventLoop | None = None
) -> AsyncioTasks:
    """Exports the task count of `loop` (the running one by default) in `registry`; once per
    registry, a later call only moves it to the new loop (a service started again in one process)."""
    collector = _collectors.get(registry)
    if collector is None:
        collector = AsyncioTasks()
        registry.register(collector)
        _collectors[registry] = collector
    collector.loop = loop or asyncio.get_running_loop()
    return collector
