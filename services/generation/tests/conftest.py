from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from generation_service.app import GenerationApp
from generation_service.metrics import GenerationMetrics
from generation_service.settings import GenerationSettings
from llmsuite.generation.v1 import generation_pb2_grpc
from llmsuite_common.clock import ManualClock
from llmsuite_common.grpc_metrics import GrpcServerMetrics
from llmsuite_testkit.openai_upstream import FakeUpstream, running_fake_upstream
from prometheus_client import CollectorRegistry

from tests.service_auth import AUTHORITY, tenant_channel


@pytest.fixture(scope="session")
def fake_session() -> Iterator[FakeUpstream]:
    with running_fake_upstream() as fake:
        yield fake


@pytest.fixture
def fake(fake_session: FakeUpstream) -> FakeUpstream:
    fake_session.reset()
    return fake_session


GenerationFactory = Callable[..., Any]


@pytest.fixture
async def start_generation(fake: FakeUpstream) -> AsyncIterator[GenerationFactory]:
    """Starts a real generation gRPC server on an ephemeral port, with the interceptor serve()
    installs (spans from `tracer_provider`, else the global one), on `clock` if given (else real
    time); returns a stub to it."""
    async with AsyncExitStack() as stack:

        async def start(
            metrics: GenerationMetrics | None = None,
            *,
            tracer_provider: Any = None,
            clock: ManualClock | None = None,
            **overrides: Any,
        ) -> generation_pb2_grpc.GenerationServiceStub:
            values: dict[str, Any] = {"generation_upstream_base_url": fake.base_url, **overrides}
            settings = GenerationSettings(**values)
            # A registry per app: several apps share this process.
            registry = CollectorRegistry()
            # A manual clock runs the app's breakers, Retry-After cooling and backoff: the test
            # moves it, and the app's waits move it instead of sleeping.
            timing: dict[str, Any] = {"clock": clock, "sleep": clock.sleep} if clock is not None else {}
            app = GenerationApp(
                settings, metrics or GenerationMetrics(registry), tracer_provider=tracer_provider, **timing
            )
            interceptors = AUTHORITY.interceptors(
                app.audience, GrpcServerMetrics(registry), tracer_provider=tracer_provider
            )
            server = grpc.aio.server(interceptors=interceptors)
            app.add_to_server(server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            await app.start()
            stack.push_async_callback(app.stop)
            stack.push_async_callback(server.stop, None)
            channel = tenant_channel(f"127.0.0.1:{port}", AUTHORITY, app.audience)
            stack.push_async_callback(channel.close)
            return generation_pb2_grpc.GenerationServiceStub(channel)

        yield start
