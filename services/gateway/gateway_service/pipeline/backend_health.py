"""Which backends answer their health checks, for readiness and as metrics.

The gateway is ready when it can serve: guardrails checks every chat and generation answers it, so
both are required. Retrieval is needed only by requests that name a collection; while it is down
those get 503 `retrieval_unavailable` (with Retry-After) and every other request is served, so a
retrieval outage never takes gateway pods out of their Service.
"""

import asyncio
import contextlib
from dataclasses import dataclass

from prometheus_client import Gauge

from .clients import BackendClients

SERVING = "SERVING"
REQUIRED = ("guardrails", "generation")
OPTIONAL = ("retrieval",)


@dataclass(frozen=True)
class Readiness:
    statuses: dict[str, str]

    @property
    def failed(self) -> dict[str, str]:
        """Required backends that are not serving: the pod is not ready."""
        return {
            name: status for name, status in self.statuses.items() if name in REQUIRED and status != SERVING
        }

    @property
    def degraded(self) -> list[str]:
        """Optional backends that are not serving: only the requests that need them fail."""
        return [name for name in OPTIONAL if self.statuses.get(name) != SERVING]

    @property
    def ready(self) -> bool:
        return not self.failed

    def verbose(self) -> str:
        """The per-check listing Kubernetes components give for `/readyz?verbose`."""
        lines = []
        for name in (*REQUIRED, *OPTIONAL):
            status = self.statuses.get(name, "NOT_CONNECTED")
            kind = "" if name in REQUIRED else " (optional)"
            lines.append(f"[+]{name} ok{kind}" if status == SERVING else f"[-]{name} failed: {status}{kind}")
        lines.append("readyz check passed" if self.ready else "readyz check failed")
        return "\n".join(lines) + "\n"


class BackendHealth:
    """Checks each backend's standard gRPC health service and keeps a gauge per backend current."""

    def __init__(self, clients: BackendClients, serving: Gauge, timeout_seconds: float) -> None:
        self._clients = clients
        self._serving = serving
        self._timeout = timeout_seconds
        self._watcher: asyncio.Task[None] | None = None

    async def check(self) -> Readiness:
        statuses = await self._clients.health(self._timeout)
        for name in (*REQUIRED, *OPTIONAL):
            statuses.setdefault(name, "NOT_CONNECTED")
            self._serving.labels(name).set(1 if statuses[name] == SERVING else 0)
        return Readiness(statuses)

    def start(self, interval_seconds: float) -> None:
        """Re-checks every interval, so the gauges stay current between readiness probes (0: off)."""
        if interval_seconds > 0:
            self._watcher = asyncio.create_task(self._watch(interval_seconds), name="backend-health")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch(self, interval_seconds: float) -> None:
        while True:
            await self.check()
            await asyncio.sleep(interval_seconds)
