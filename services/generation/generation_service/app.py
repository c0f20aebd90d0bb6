import asyncio
import contextlib

import grpc
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc
from llmsuite_common.clock import Clock, Sleep, monotonic
from opentelemetry.trace import TracerProvider

from .metrics import GenerationMetrics
from .pool import ResiliencePolicy, UpstreamPool
from .routing import RoutingTable
from .routing_source import RoutingSource
from .servicer import GenerationServicer
from .settings import GenerationSettings
from .upstream import UpstreamClient


def resilience_policy(settings: GenerationSettings) -> ResiliencePolicy:
    return ResiliencePolicy(
        max_attempts=settings.generation_max_attempts,
        backoff_base=settings.generation_backoff_base_seconds,
        backoff_max=settings.generation_backoff_max_seconds,
        budget_percent=settings.generation_retry_budget_percent,
        budget_window=settings.generation_retry_budget_window_seconds,
        budget_min_per_second=settings.generation_retry_budget_min_per_second,
        breaker_failures=settings.generation_breaker_failures,
        breaker_open_seconds=settings.generation_breaker_open_seconds,
        max_retry_after=settings.generation_max_retry_after_seconds,
    )


class GenerationApp:
    service_names = (generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name,)
    # Service tokens must be issued for this name (call_auth, service_tokens).
    audience = "generation"

    def __init__(
        self,
        settings: GenerationSettings,
        metrics: GenerationMetrics | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        clock: Clock = monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._metrics = metrics or GenerationMetrics()
        self._upstream = UpstreamClient(
            max_connections=settings.generation_max_connections,
            max_answer_bytes=settings.grpc_max_message_bytes,
            tracer_provider=tracer_provider,
        )
        self._pool = UpstreamPool(
            self._upstream, resilience_policy(settings), self._metrics, clock=clock, sleep=sleep
        )
        self._routing = RoutingSource(
            settings, on_change=self._routing_changed, on_error=self._metrics.routing_reload_errors.inc
        )
        self._servicer = GenerationServicer(self._routing, self._pool, self._metrics, clock=clock)
        self._stop_watching = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    def _routing_changed(self, table: RoutingTable) -> None:
        self._pool.retain(table.deployments())

    def add_to_server(self, server: grpc.aio.Server) -> None:
        generation_pb2_grpc.add_GenerationServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        # aiohttp's session must be created inside the running loop.
        await self._upstream.open()
        if self._routing.reloadable:
            self._watcher = asyncio.create_task(
                self._routing.watch(self._stop_watching), name="routing-reload"
            )

    async def stop(self) -> None:
        self._stop_watching.set()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self._upstream.aclose()
