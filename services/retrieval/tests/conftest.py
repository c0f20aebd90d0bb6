import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from llmsuite.retrieval.v1 import retrieval_pb2_grpc
from llmsuite_common.embedded_postgres import EmbeddedPostgres
from llmsuite_testkit.processes import free_port
from prometheus_client import CollectorRegistry
from retrieval_service.app import RetrievalApp
from retrieval_service.embedder import Embedder, packaged_model_dir
from retrieval_service.settings import RetrievalSettings

from tests.service_auth import AUTHORITY, tenant_channel


@pytest.fixture(scope="session")
def scratch_dir() -> Iterator[Path]:
    # Short and under /tmp: PostgreSQL's Unix socket path must fit in 107 bytes, and
    # pgserver's `pgserver` system user must be able to reach the data directory.
    path = Path(tempfile.mkdtemp(prefix="rtv-", dir="/tmp"))
    yield path
    stop_abandoned_server(path / "pg")
    shutil.rmtree(path, ignore_errors=True)


def stop_abandoned_server(data_dir: Path) -> None:
    """test_crash SIGKILLs a process that shares the embedded server, and its pid stays in
    pgserver's list of handles, so the last handle to leave does not stop the server. Stop it
    here (fast shutdown) rather than leave a postgres running on a deleted directory."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return  # a stale pid file; that number belongs to someone else now
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (data_dir / "postmaster.pid").exists():
        time.sleep(0.1)


@pytest.fixture(scope="session")
def model_dir(scratch_dir: Path) -> Path:
    return packaged_model_dir(str(scratch_dir / "models"))


@pytest.fixture(scope="session")
def s3_port() -> int:
    """Chosen up front so the service's settings can name it; the server starts only when a test asks."""
    return free_port()


@pytest.fixture(scope="session")
def s3_endpoint(s3_port: int) -> Iterator[str]:
    """A local S3 (moto in server mode) on loopback, with stand-in credentials for botocore."""
    from moto.server import ThreadedMotoServer

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        os.environ.setdefault(name, value)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=s3_port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{s3_port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def file_root(scratch_dir: Path) -> Path:
    root = scratch_dir / "files"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def retrieval_settings(
    scratch_dir: Path, model_dir: Path, s3_port: int, file_root: Path
) -> RetrievalSettings:
    return RetrievalSettings(
        retrieval_database_url="",
        retrieval_pgserver_data_dir=str(scratch_dir / "pg"),
        retrieval_embedding_model_dir=str(model_dir),
        retrieval_chunk_tokens=120,
        retrieval_chunk_overlap_tokens=20,
        retrieval_pool_min_size=1,
        retrieval_pool_max_size=4,
        retrieval_max_k=20,
        retrieval_max_query_bytes=2048,
        retrieval_max_metadata_entries=4,
        retrieval_s3_endpoint_url=f"http://127.0.0.1:{s3_port}",
        retrieval_s3_region="us-east-1",
        retrieval_file_roots=str(file_root),
        retrieval_max_source_bytes=2 * 1024 * 1024,
    )


@pytest.fixture(scope="session")
async def embedder(model_dir: Path) -> AsyncIterator[Embedder]:
    model = Embedder(batch_size=8, torch_threads=2)
    await model.load(model_dir)
    yield model
    await model.close()


@pytest.fixture(scope="session")
def metrics_registry() -> CollectorRegistry:
    """The retrieval app's own registry: several apps live in one test process."""
    return CollectorRegistry()


@pytest.fixture(scope="session")
async def retrieval_target(
    retrieval_settings: RetrievalSettings, metrics_registry: CollectorRegistry
) -> AsyncIterator[str]:
    """A real RetrievalApp behind a real gRPC server on loopback, with embedded PostgreSQL."""
    app = RetrievalApp(retrieval_settings, registry=metrics_registry)
    server = grpc.aio.server(interceptors=AUTHORITY.interceptors(app.audience))
    app.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await app.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)
        await app.stop()


@pytest.fixture(scope="session")
async def stub(retrieval_target: str) -> AsyncIterator[retrieval_pb2_grpc.RetrievalServiceStub]:
    """Each call carries an admin token for the org its request names (streams: pass
    metadata=auth("retrieval", org))."""
    async with tenant_channel(retrieval_target, AUTHORITY, "retrieval") as channel:
        yield retrieval_pb2_grpc.RetrievalServiceStub(channel)


@pytest.fixture(scope="session")
def public_keys_file(scratch_dir: Path) -> str:
    """The authority's JWKS, for retrieval processes started by tests (GRPC_AUTH_PUBLIC_KEYS_FILE)."""
    return str(AUTHORITY.write(scratch_dir / "service-keys")[1])


@pytest.fixture(scope="session")
def database_url(retrieval_target: str, retrieval_settings: RetrievalSettings) -> str:
    # Joins the server the app already started (same process and data directory);
    # the app releases it at the end of the session.
    return EmbeddedPostgres(retrieval_settings.retrieval_pgserver_data_dir).start()
