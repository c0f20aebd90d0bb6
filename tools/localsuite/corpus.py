"""Ingest the sample corpus through retrieval's public gRPC API."""

from pathlib import Path

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc

CORPUS_DIR = Path(__file__).parent / "sample_corpus"
SAMPLE_COLLECTION = "handbook"


def ingest_dir(
    port: int,
    org_id: str,
    metadata: tuple[tuple[str, str], ...],
    collection: str = SAMPLE_COLLECTION,
    directory: Path = CORPUS_DIR,
) -> int:
    """`metadata` carries a service token for `org_id` (retrieval verifies every caller)."""
    documents = [
        retrieval_pb2.Document(id=path.stem, text=path.read_text(), metadata={"path": path.name})
        for path in sorted(directory.glob("*.md"))
    ]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = retrieval_pb2_grpc.RetrievalServiceStub(channel).Ingest(
            retrieval_pb2.IngestRequest(
                context=common_pb2.RequestContext(org_id=org_id, request_id="sample-corpus"),
                collection=collection,
                documents=documents,
            ),
            timeout=120,
            metadata=metadata,
        )
    return int(reply.chunks)
