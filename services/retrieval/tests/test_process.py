"""The service as its own process: NOT_SERVING while loading, SERVING after, clean exit on SIGTERM.

It points at the same embedded-PostgreSQL data directory as the in-process fixture,
so it also shows two processes sharing one pgserver, and that the one leaving does
not stop the server under the one staying.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_testkit.processes import free_port
from retrieval_service.settings import RetrievalSettings

from tests.service_auth import auth

SERVICE = retrieval_pb2.DESCRIPTOR.services_by_name["RetrievalService"]


async def reflected_methods(channel: grpc.aio.Channel) -> list[str]:
    async def ask():
        yield reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE.full_name)

    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = [r async for r in stub.ServerReflectionInfo(ask())]
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in replies[0].file_descriptor_response.file_descriptor_proto
    ]
    return [m.name for f in files for s in f.service if s.name == SERVICE.name for m in s.method]


async def health(port: int) -> int | None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=0.5
            )
        except grpc.aio.AioRpcError:
            return None
    return int(reply.status)


async def test_service_process_loads_serves_and_drains(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
    retrieval_settings: RetrievalSettings,
    tmp_path: Path,
    public_keys_file: str,
):
    await stub.Ingest(
        retrieval_pb2.IngestRequest(
            context=common_pb2.RequestContext(org_id="org-p"),
            collection="process",
            documents=[retrieval_pb2.Document(id="tides", text="Tides follow the pull of the Moon.")],
        ),
        timeout=30,
    )
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "DRAIN_SECONDS": "0.2",
        "SHUTDOWN_GRACE_SECONDS": "2",
        "RETRIEVAL_PGSERVER_DATA_DIR": retrieval_settings.retrieval_pgserver_data_dir,
        "RETRIEVAL_EMBEDDING_MODEL_DIR": retrieval_settings.retrieval_embedding_model_dir,
        "GRPC_AUTH_PUBLIC_KEYS_FILE": public_keys_file,
    }
    log_path = tmp_path / "retrieval.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_service"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        seen: list[int | None] = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            status = await health(port)
            if not seen or seen[-1] != status:
                seen.append(status)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            await asyncio.sleep(0.1)
        assert seen[-1] == health_pb2.HealthCheckResponse.SERVING, log_path.read_text()
        assert health_pb2.HealthCheckResponse.NOT_SERVING in seen  # the model and database loaded behind it

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            # Reflection describes every RPC, so grpcurl works without the proto files.
            assert set(await reflected_methods(channel)) == set(SERVICE.methods_by_name)
            found = await retrieval_pb2_grpc.RetrievalServiceStub(channel).Search(
                retrieval_pb2.SearchRequest(
                    context=common_pb2.RequestContext(org_id="org-p"),
                    collection="process",
                    query="what causes tides?",
                ),
                timeout=10,
                metadata=auth("retrieval", "org-p"),
            )
        assert [c.source_id for c in found.chunks] == ["tides"]  # written by the other process

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    # The fixture's process still holds the shared server.
    again = await stub.Search(
        retrieval_pb2.SearchRequest(
            context=common_pb2.RequestContext(org_id="org-p"), collection="process", query="tides"
        ),
        timeout=10,
    )
    assert [c.source_id for c in again.chunks] == ["tides"]
    logs = log_path.read_text()
    assert '"msg":"serving"' in logs and '"msg":"stopped"' in logs
