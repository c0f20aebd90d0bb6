"""Serving the app with uvicorn, draining on SIGTERM like the gRPC services do."""

import asyncio
import functools
import logging
import signal
from types import FrameType

import uvicorn
from llmsuite_common.telemetry import shutdown_telemetry

from .app import create_app
from .clients import BackendClients
from .lifecycle import Lifecycle
from .settings import GatewaySettings

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT /readyz turns 503 for `drain_seconds`, then uvicorn shuts down
    gracefully; a second signal exits at once."""

    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float) -> None:
        super().__init__(config)
        self._lifecycle = lifecycle
        self._drain_seconds = drain_seconds
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

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._lifecycle.draining or self._loop is None or self._drain_seconds <= 0:
            super().handle_exit(sig, frame)
            return
        self._lifecycle.draining = True
        log.info("draining", extra={"seconds": self._drain_seconds})
        finish = functools.partial(super().handle_exit, sig, frame)
        self._loop.call_soon_threadsafe(self._loop.call_later, self._drain_seconds, finish)


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
        http="httptools",
        access_log=False,  # AccessMiddleware logs each request once, as JSON
        log_config=None,  # keep the JSON handlers set up by telemetry
        server_header=False,
        # The client address comes from the socket; X-Forwarded-For is read only as far as
        # GATEWAY_TRUSTED_PROXY_HOPS allows (client_ip.py), never uvicorn's loopback default.
        proxy_headers=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )
    DrainingServer(config, lifecycle, settings.drain_seconds).run()
