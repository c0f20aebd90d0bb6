"""The one gRPC server runner: health, reflection, error mapping, graceful drain."""

import asyncio
import logging
import signal
from collections.abc import Sequence
from typing import Protocol

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .call_auth import CallAuthenticator
from .grpc_client import BALANCER_HEALTH_SERVICE
from .grpc_metrics import GrpcServerMetrics, start_metrics_server
from .grpc_tls import server_credentials
from .process_metrics import track_asyncio_tasks
from .service_tokens import PublicKeys, TokenVerifier
from .settings import ServiceSettings
from .startup_heap import freeze_startup_heap
from .stream_driver import server_interceptors
from .telemetry import shutdown_telemetry

log = logging.getLogger(__name__)

# The last part of the drain: balancing callers have been told to go (BALANCER_HEALTH_SERVICE is
# NOT_SERVING) and the listener still takes the calls they sent meanwhile.
BALANCER_SETTLE_SECONDS = 0.5


class GrpcApp(Protocol):
    """What a service hands to serve(): its servicers and their lifecycle."""

    @property
    def service_names(self) -> Sequence[str]: ...

    @property
    def audience(self) -> str:
        """The name service tokens must be issued for to call this service."""

    def add_to_server(self, server: grpc.aio.Server) -> None: ...

    async def start(self) -> None:
        """Load models, open pools; the service reports NOT_SERVING until this returns."""

    async def stop(self) -> None:
        """Release what start() acquired, after in-flight calls have finished."""


def call_authenticator(settings: ServiceSettings, audience: str) -> CallAuthenticator:
    """Every call but health checks needs a token for `audience`, verified with the public keys."""
    if not settings.grpc_auth_public_keys_file:
        raise RuntimeError(
            "GRPC_AUTH_PUBLIC_KEYS_FILE is not set: gRPC services verify every caller's token. "
            "Make a key pair with `python -m llmsuite_common.service_keys --out <dir>`."
        )
    verifier = TokenVerifier(PublicKeys.from_file(settings.grpc_auth_public_keys_file), audience)
    return CallAuthenticator(verifier, reflection_open=settings.grpc_reflection_open)


def server_options(settings: ServiceSettings) -> list[tuple[str, int]]:
    # A connection past its age gets a GOAWAY: new calls go to a fresh connection (so clients
    # re-resolve and reach new replicas), while the calls open on it keep running for the age
    # grace, which is its own setting: a stream started just before the age must be able to run
    # its whole length, whereas the shutdown grace only bounds a pod's stop.
    age_ms = int(settings.grpc_max_connection_age_seconds * 1000)
    age_grace_ms = int(settings.grpc_max_connection_age_grace_seconds * 1000)
    return [
        ("grpc.max_receive_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_send_message_length", settings.grpc_max_message_bytes),
        ("grpc.max_connection_age_ms", age_ms),
        ("grpc.max_connection_age_grace_ms", age_grace_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ]


async def serve(settings: ServiceSettings, app: GrpcApp, metrics: GrpcServerMetrics | None = None) -> None:
    # One interceptor does the tracing span, metrics, error mapping and the stream writes, once
    # per call: a chain of one per concern cost every streamed message a generator per layer.
    interceptors = server_interceptors(
        metrics or GrpcServerMetrics(), authenticator=call_authenticator(settings, app.audience)
    )
    server = grpc.aio.server(interceptors=interceptors, options=server_options(settings))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    app.add_to_server(server)
    names = list(app.service_names)
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    # "" and each service for probes and load balancers; BALANCER_HEALTH_SERVICE for callers that
    # balance over replicas with llmsuite_common.grpc_client.channel.
    statuses = ("", *names, BALANCER_HEALTH_SERVICE)
    for name in statuses:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)

    address = f"{settings.host}:{settings.port}"
    tls = server_credentials(settings)
    port = server.add_secure_port(address, tls) if tls is not None else server.add_insecure_port(address)
    await server.start()
    log.info("listening", extra={"port": port, "state": "loading", "tls": tls is not None})
    if settings.metrics_port:
        track_asyncio_tasks()
        metrics_port = start_metrics_server(settings.host, settings.metrics_port)
        log.info("metrics listening", extra={"metrics_port": metrics_port})

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    starting = asyncio.create_task(app.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if starting.done():
        starting.result()
        freeze_startup_heap()
        for name in statuses:
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"port": port})
        await stopping
    else:
        starting.cancel()

    # Readiness flips first so probes and load balancers stop sending before the listener closes;
    # calls that still arrive are served. Balancing callers keep sending until the drain's last
    # BALANCER_SETTLE_SECONDS (they may not be connected to a replacement yet), then move. Then
    # stop() refuses new calls and gives those in flight (streams included) up to the shutdown
    # grace; it returns as soon as the last one ends, so the grace costs nothing when idle.
    for name in ("", *names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    log.info("draining", extra={"seconds": settings.drain_seconds})
    settle = min(BALANCER_SETTLE_SECONDS, settings.drain_seconds / 2)
    await asyncio.sleep(settings.drain_seconds - settle)
    await health_servicer.enter_graceful_shutdown()
    # The callers' health watches hear it and stop picking this replica before its listener closes:
    # a call they pick now still reaches a server that takes it.
    await asyncio.sleep(settle)
    log.info("stopping", extra={"grace_seconds": settings.shutdown_grace_seconds})
    await server.stop(settings.shutdown_grace_seconds)
    try:
        await app.stop()
    finally:
        log.info("stopped")
        shutdown_telemetry()


def run(settings: ServiceSettings, app: GrpcApp) -> None:
    # uvloop, as the gateway's uvicorn uses: every streamed message costs the loop a few callbacks
    # and socket wake-ups, and uvloop's are several times cheaper than the pure-Python loop's.
    uvloop.run(serve(settings, app))
