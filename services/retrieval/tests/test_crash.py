"""A service process killed in the middle of a streamed ingest leaves no half-indexed document.

Each document is written in one transaction (its chunks, vectors and document row
together), so after a SIGKILL every document is either complete or absent.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_testkit.processes import free_port
from retrieval_service.db import DOCUMENTS, TABLE
from retrieval_service.settings import RetrievalSettings

from tests.service_auth import auth

TENANT, COLLECTION, DOCS = "crash-org", "crash", 40


def long_document(n: int) -> str:
    return "\n\n".join(
        f"Report {n}, part {p}. "
        + " ".join(f"Observation {n}.{p}.{i} notes reading {i * n} units." for i in range(12))
        for p in range(6)
    )


async def serving(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=0.5
                )
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"the service did not start:\n{log.read_text()}")


async def test_a_killed_ingest_leaves_only_whole_documents(
    stub: retrieval_pb2_grpc.RetrievalServiceStub,
    retrieval_settings: RetrievalSettings,
    database_url: str,
    tmp_path: Path,
    public_keys_file: str,
):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "RETRIEVAL_PGSERVER_DATA_DIR": retrieval_settings.retrieval_pgserver_data_dir,
        "RETRIEVAL_EMBEDDING_MODEL_DIR": retrieval_settings.retrieval_embedding_model_dir,
        "RETRIEVAL_INGEST_CONCURRENCY": "2",
        "GRPC_AUTH_PUBLIC_KEYS_FILE": public_keys_file,
    }
    log = tmp_path / "retrieval.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "retrieval_service"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    indexed: list[str] = []
    try:
        await serving(port, proc, log)

        async def requests():
            yield retrieval_pb2.IngestStreamRequest(
                context=common_pb2.RequestContext(org_id=TENANT),
                collection=COLLECTION,
                sources=[retrieval_pb2.Source(id=f"report-{n}", text=long_document(n)) for n in range(DOCS)],
            )

        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = retrieval_pb2_grpc.RetrievalServiceStub(channel).IngestStream(
                requests(), timeout=120, metadata=auth("retrieval", TENANT)
            )
            async for progress in call:
                assert progress.status == retrieval_pb2.IngestProgress.INDEXED
                indexed.append(progress.source_id)
                if len(indexed) == 3:
                    # Mid-way: the next documents are being embedded or written right now.
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        documents = dict(
            await (
                await conn.execute(
                    f"SELECT source_id, chunks FROM {DOCUMENTS} WHERE tenant = %s AND collection = %s",
                    (TENANT, COLLECTION),
                )
            ).fetchall()
        )
        stored = {
            source_id: sorted(ordinals)
            for source_id, ordinals in await (
                await conn.execute(
                    f"""SELECT source_id, array_agg(ordinal) FROM {TABLE}
                        WHERE tenant = %s AND collection = %s GROUP BY source_id""",
                    (TENANT, COLLECTION),
                )
            ).fetchall()
        }
    assert set(indexed) <= set(documents), "a document reported as indexed was lost"
    assert len(documents) < DOCS, "the kill came too late to interrupt anything"
    assert set(stored) == set(documents), "chunks without their document, or the reverse"
    for source_id, chunks in documents.items():
        assert chunks > 1 and stored[source_id] == list(range(chunks)), f"{source_id} is half-indexed"

    # The surviving service finds only whole documents.
    found = await stub.Search(
        retrieval_pb2.SearchRequest(
            context=common_pb2.RequestContext(org_id=TENANT),
            collection=COLLECTION,
            query="observation readings",
            k=20,
        ),
        timeout=30,
    )
    assert {c.source_id for c in found.chunks} <= set(documents)
