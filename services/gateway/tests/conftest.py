"""Real backends in-process for endpoint tests: guardrails and generation on ephemeral gRPC ports,
generation talking to the scripted fake upstream, and the gateway on a real uvicorn listener."""

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import openai
import pytest
import uvicorn
from gateway_service.app import create_app
from gateway_service.pipeline.clients import BackendClients, BackendTargets, token_issuer
from gateway_service.settings import GatewaySettings
from generation_service.app import GenerationApp
from generation_service.settings import GenerationSettings, ModelRoute
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from guardrails_service.app import GuardrailsApp
from guardrails_service.settings import GuardrailsSettings
from llmsuite_common.call_auth import OutboundCredentials
from llmsuite_common.clock import Clock, monotonic
from llmsuite_common.grpc_client import BALANCER_HEALTH_SERVICE
from llmsuite_testkit.openai_upstream import FakeUpstream, running_fake_upstream

from services.gateway.tests.redis_server import RedisServer, redis_server

# The in-process backends verify with its public key, and the gateways started here sign with its
# private key, as deployed services do.
from tests.service_auth import AUTHORITY

API_KEY = "sk-gateway-test-key"
MODEL = "fake-model"
DENIED = "forbidden topic"
START_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Backends:
    guardrails: str
    generation: str
    # Nothing listens here: retrieval needs Postgres and runs in the cross-service tests.
    unreachable: str


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _grpc_server(app: Any, stack: AsyncExitStack) -> str:
    server = grpc.aio.server(interceptors=AUTHORITY.interceptors(app.audience))
    app.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await app.start()
    for name in ("", BALANCER_HEALTH_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    stack.push_async_callback(app.stop)
    stack.push_async_callback(server.stop, None)
    return f"dns:///127.0.0.1:{port}"


@pytest.fixture(scope="session")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    key_path, _ = AUTHORITY.write(tmp_path_factory.mktemp("service-keys"))
    return str(key_path)


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """One embedded PostgreSQL for the session; each test uses its own organizations and keys."""
    from llmsuite_common.embedded_postgres import EmbeddedPostgres

    # Its own temp dir: pytest prunes old basetemp dirs, which other runs on the machine may trigger.
    data = tempfile.mkdtemp(prefix="gateway-pg-")
    server = EmbeddedPostgres(os.path.join(data, "data"))
    try:
        yield server.start()
    finally:
        server.release()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    with running_fake_upstream(models=[MODEL]) as fake:
        yield fake


@pytest.fixture
def fake(fake_upstream: FakeUpstream) -> FakeUpstream:
    fake_upstream.reset()
    return fake_upstream


@pytest.fixture(scope="session")
async def backends(fake_upstream: FakeUpstream) -> AsyncIterator[Backends]:
    async with AsyncExitStack() as stack:
        guardrails = await _grpc_server(
            GuardrailsApp(GuardrailsSettings(guardrails_deny_terms=[DENIED])), stack
        )
        generation_settings = GenerationSettings(
            generation_upstream_base_url=fake_upstream.base_url,
            generation_models={MODEL: ModelRoute(upstream_model=MODEL)},
        )
        generation = await _grpc_server(GenerationApp(generation_settings), stack)
        yield Backends(guardrails, generation, f"dns:///127.0.0.1:{unused_port()}")


@dataclass(frozen=True)
class RunningGateway:
    url: str
    settings: GatewaySettings

    api_key: str = API_KEY
    model: str = MODEL
    denied_term: str = DENIED

    def client(self, api_key: str | None = API_KEY, timeout: float = 30) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)

    def openai(self, api_key: str = API_KEY) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=30)


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def start_gateway(backends: Backends, signing_key_file: str) -> AsyncIterator[GatewayFactory]:
    """Starts a gateway on a real uvicorn listener; keyword arguments override its settings.

    `clock` runs its in-process windows and TTLs: a test passes a ManualClock and advances it.
    """
    async with AsyncExitStack() as stack:

        async def start(
            targets: BackendTargets | None = None,
            tracer_provider: Any = None,
            clock: Clock = monotonic,
            **overrides: Any,
        ) -> RunningGateway:
            values: dict[str, Any] = {
                "gateway_api_key": API_KEY,
                "gateway_default_model": MODEL,
                "gateway_token_signing_key_file": signing_key_file,
                **overrides,
            }
            settings = GatewaySettings(**values)
            targets = targets or BackendTargets(
                backends.guardrails, backends.unreachable, backends.generation
            )
            app = create_app(
                settings,
                BackendClients(
                    targets,
                    max_message_bytes=settings.grpc_max_message_bytes,
                    credentials=OutboundCredentials(token_issuer(settings)),
                ),
                tracer_provider=tracer_provider,
                clock=clock,
            )
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            config = uvicorn.Config(
                app, access_log=False, log_config=None, timeout_graceful_shutdown=1, proxy_headers=False
            )
            server = uvicorn.Server(config)
            # The test runner owns the process signals.
            server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
            task = asyncio.create_task(server._serve(sockets=[sock]))

            async def stop() -> None:
                server.should_exit = True
                await asyncio.wait_for(task, START_TIMEOUT_SECONDS)
                sock.close()

            stack.push_async_callback(stop)
            for _ in range(START_TIMEOUT_SECONDS * 100):
                if server.started or task.done():
                    break
                await asyncio.sleep(0.01)
            if not server.started:
                raise RuntimeError("gateway did not start")
            return RunningGateway(f"http://127.0.0.1:{sock.getsockname()[1]}", settings)

        yield start


@pytest.fixture
def backend_addresses(backends: Backends) -> Backends:
    return backends


@pytest.fixture
async def gateway(start_gateway: GatewayFactory) -> RunningGateway:
    return await start_gateway()
