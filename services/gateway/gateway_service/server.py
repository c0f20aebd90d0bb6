"""Serving the app with uvicorn, draining on SIGTERM like the gRPC services do."""

import asyncio
import functools
import logging
import signal
import time
from types import FrameType

import uvicorn
from llmsuite_common.startup_heap import freeze_startup_heap
from llmsuite_common.telemetry import shutdown_telemetry

from .api.http_protocol import guarded_protocol
from .api.routes.ws import MAX_FRAME_BYTES
from .app import create_app
from .lifecycle import Lifecycle
from .pipeline.clients import BackendClients
from .settings import GatewaySettings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT /readyz turns 503 for `drain_seconds`, then uvicorn shuts down
    gracefully; a second signal exits at once.

    The whole shutdown fits in drain + grace from the signal: in-flight requests get the grace less
    `final_flush_reserve`, which is left for writing the request log before exit (lifespan end).
    """

    def __init__(
        self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float, grace_seconds: float
    ) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._drain_seconds = drain_seconds
        self._grace_seconds = grace_seconds
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _serve(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        # uvicorn re-raises the caught signal after _serve returns, which ends the process at once;
        # spans still buffered must be exported before that.
        self._loop = asyncio.get_running_loop()
        try:
            await super()._serve(sockets)
        finally:
            shutdown_telemetry()
        # SIGTERM is the orchestrator's ordinary stop: once drained (requests finished, queued
        # request-log rows written) the process exits 0 rather than dying by the re-raised signal.
        self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]

    async def startup(self, sockets=None) -> None:  # type: ignore[no-untyped-def]
        await super().startup(sockets)
        if not self.should_exit:
            freeze_startup_heap()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._lifecycle.exit_deadline is None:
            budget = max(0.0, self._drain_seconds) + self._grace_seconds
            self._lifecycle.exit_deadline = time.monotonic() + budget
        if self._lifecycle.draining or self._loop is None or self._drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self._lifecycle.draining = True
        log.info("draining", extra={"seconds": self._drain_seconds})
        finish = functools.partial(super().handle_exit, sig, frame)
        self._loop.call_soon_threadsafe(self._loop.call_later, self._drain_seconds, finish)


def final_flush_reserve(grace_seconds: float) -> float:
    """The part of the shutdown grace kept for writing queued request-log rows after the last
    in-flight request: a quarter, at most 5 s (a healthy database needs milliseconds)."""
    return min(5.0, grace_seconds / 4)


def serve(settings: GatewaySettings) -> None:
    lifecycle = Lifecycle()
    factory = functools.partial(
        create_app, settings, BackendClients.from_settings(settings), lifecycle=lifecycle
    )
    config = uvicorn.Config(
        factory,
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        access_log=False,  # AccessMiddleware logs each request once, as JSON
        log_config=None,  # keep the JSON handlers set up by telemetry
        server_header=False,
        # The client address comes from the socket; X-Forwarded-For is read only as far as
        # GATEWAY_TRUSTED_PROXY_HOPS allows (client_ip.py), never uvicorn's loopback default.
        proxy_headers=False,
        timeout_graceful_shutdown=settings.shutdown_grace_seconds  # type: ignore[arg-type]
        - final_flush_reserve(settings.shutdown_grace_seconds),
        # Slow or too many clients: header deadline, header size and connection cap per connection
        # (http_protocol.py); the body deadline is BodySizeLimitMiddleware's.
        http=guarded_protocol(
            header_timeout=settings.gateway_header_timeout_seconds,
            max_connections=settings.gateway_max_connections,
        ),
        # A larger WebSocket frame is refused by the protocol (close 1009) before it is buffered.
        ws_max_size=MAX_FRAME_BYTES,
    )
    DrainingServer(config, lifecycle, settings.drain_seconds, settings.shutdown_grace_seconds).run()
