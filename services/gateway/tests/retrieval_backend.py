"""A real retrieval service for the gateway's collection, embeddings and grounded-chat tests: the
RetrievalApp on a loopback gRPC port, on the session's embedded PostgreSQL and the packaged
embedding model. Import the fixture into a test module to use it; it starts on first use."""

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest
from prometheus_client import CollectorRegistry
from retrieval_service.app import RetrievalApp
from retrieval_service.settings import RetrievalSettings

from services.gateway.tests.conftest import _grpc_server


@pytest.fixture(scope="session")
async def retrieval_backend(postgres_dsn: str) -> AsyncIterator[str]:
    models = tempfile.mkdtemp(prefix="gw-rtv-models-")
    settings = RetrievalSettings(
        retrieval_database_url=postgres_dsn,
        retrieval_model_cache_dir=models,
        retrieval_pool_min_size=1,
        retrieval_pool_max_size=2,
        retrieval_torch_threads=1,
    )
    try:
        async with AsyncExitStack() as stack:
            # Its own registry: the gateway and other services share this test process.
            yield await _grpc_server(RetrievalApp(settings, registry=CollectorRegistry()), stack)
    finally:
        shutil.rmtree(models, ignore_errors=True)
