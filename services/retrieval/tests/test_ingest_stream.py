"""IngestStream: Markdown, HTML, PDF and text, inline or fetched from file:// and a local S3 server."""

import asyncio
from pathlib import Path

import grpc
import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from llmsuite_common.errors import read_error_detail

from tests.service_auth import auth

Stub = retrieval_pb2_grpc.RetrievalServiceStub
Progress = retrieval_pb2.IngestProgress
Source = retrieval_pb2.Source


def make_pdf(pages: list[list[str]]) -> bytes:
    """A small valid PDF with one Helvetica text line per string, built by hand for the test."""
    out = b"%PDF-1.4\n"
    offsets: dict[int, int] = {}

    def add(num: int, content: bytes) -> None:
        nonlocal out
        offsets[num] = len(out)
        out += f"{num} 0 obj\n".encode() + content + b"\nendobj\n"

    page_nums = [4 + 2 * i for i in range(len(pages))]
    add(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_nums)
    add(2, f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    add(3, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for num, lines in zip(page_nums, pages, strict=True):
        ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        ops += [f"({line.replace('(', '[').replace(')', ']')}) Tj T*" for line in lines]
        stream = "\n".join([*ops, "ET"]).encode()
        add(
            num,
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {num + 1} 0 R >>".encode(),
        )
        add(num + 1, f"<< /Length {len(stream)} >>\nstream\n".encode() + stream + b"\nendstream")
    xref = len(out)
    out += f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offsets[n]:010d} 00000 n \n".encode() for n in range(1, len(offsets) + 1))
    out += f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


MARKDOWN = (
    "# Onboarding\n\nWelcome to the team. Your manager sets up your accounts on day one.\n\n"
    "## Equipment\n\nEvery engineer receives a laptop and two monitors.\n"
)
HTML = (
    "<html><head><title>t</title><script>var secretToken = 'do-not-index';</script></head>"
    "<body><nav>Home | About</nav><h1>Cafeteria</h1><p>The cafeteria serves lunch from noon until 2 pm.</p>"
    "<h2>Menu</h2><ul><li>Soup of the day</li><li>Vegetable curry</li></ul></body></html>"
)
PDF = make_pdf([["Glacier survey 2024."], ["The survey measured a loss of 3 metres of ice at the snout."]])


def ctx(org: str) -> common_pb2.RequestContext:
    return common_pb2.RequestContext(org_id=org)


async def stream(stub: Stub, org: str, collection: str, *batches: list[Source]) -> list[Progress]:
    async def requests():
        for i, sources in enumerate(batches):
            if i == 0:
                yield retrieval_pb2.IngestStreamRequest(
                    context=ctx(org), collection=collection, sources=sources
                )
            else:
                yield retrieval_pb2.IngestStreamRequest(sources=sources)

    return [p async for p in stub.IngestStream(requests(), timeout=120, metadata=auth("retrieval", org))]


async def texts(stub: Stub, org: str, collection: str, query: str, k: int = 10) -> dict[str, str]:
    reply = await stub.Search(
        retrieval_pb2.SearchRequest(context=ctx(org), collection=collection, query=query, k=k), timeout=30
    )
    found: dict[str, str] = {}
    for c in sorted(reply.chunks, key=lambda c: (c.source_id, c.ordinal)):
        found[c.source_id] = found.get(c.source_id, "") + c.text + "\n"
    return found


async def test_each_format_is_parsed_and_failures_do_not_stop_the_stream(stub: Stub):
    progress = await stream(
        stub,
        "fmt",
        "docs",
        [
            Source(id="onboarding.md", text=MARKDOWN, metadata={"kind": "md"}),
            Source(id="cafeteria", data=HTML.encode(), content_type="text/html"),
            Source(id="survey.pdf", data=PDF),  # type sniffed from the bytes
        ],
        [
            Source(
                id="broken.pdf", data=b"%PDF-1.4 this is not really a pdf", content_type="application/pdf"
            ),
            Source(id="empty"),
            Source(id="plain", text="Parking permits are renewed every January."),
        ],
    )
    by_id = {p.source_id: p for p in progress}
    assert [p.done for p in progress] == list(range(1, 7))
    assert progress[-1].received == 6
    for ok in ("onboarding.md", "cafeteria", "survey.pdf", "plain"):
        assert by_id[ok].status == Progress.INDEXED and by_id[ok].chunks >= 1, ok
    assert by_id["broken.pdf"].status == Progress.FAILED
    assert by_id["broken.pdf"].error.code == "invalid_request"
    assert by_id["empty"].status == Progress.FAILED and by_id["empty"].error.param == "sources[4]"

    found = await texts(stub, "fmt", "docs", "what does the cafeteria serve")
    assert "# Cafeteria" in found["cafeteria"] and "## Menu" in found["cafeteria"]
    assert "Vegetable curry" in found["cafeteria"]
    assert "do-not-index" not in found["cafeteria"] and "Home | About" not in found["cafeteria"]
    assert "3 metres of ice" in found["survey.pdf"]
    assert found["onboarding.md"].startswith("# Onboarding")


async def test_markdown_headings_start_new_chunks(stub: Stub):
    sections = "\n\n".join(
        f"## Section {i}\n\n" + " ".join(f"Statement {i}.{j} about topic {i}." for j in range(18))
        for i in range(4)
    )
    progress = await stream(stub, "fmt", "sections", [Source(id="manual.md", text=f"# Manual\n\n{sections}")])
    assert progress[0].chunks >= 4
    reply = await stub.Search(
        retrieval_pb2.SearchRequest(context=ctx("fmt"), collection="sections", query="topic", k=20),
        timeout=30,
    )
    assert len(reply.chunks) == progress[0].chunks
    headed = sorted(c.text.removeprefix("# Manual\n\n")[:12] for c in reply.chunks if "## Section" in c.text)
    # Each section heading opens a chunk (after the title) and never sits inside one.
    assert headed == [f"## Section {i}" for i in range(4)]


async def test_file_uris_are_read_only_below_the_allowed_roots(stub: Stub, file_root: Path, tmp_path: Path):
    (file_root / "policy.md").write_text("# Policy\n\nVisitors sign in at the front desk.")
    (tmp_path / "outside.txt").write_text("Not for indexing.")
    progress = await stream(
        stub,
        "files",
        "docs",
        [
            Source(uri=f"file://{file_root}/policy.md"),
            Source(uri=f"file://{tmp_path}/outside.txt"),
            Source(uri=f"file://{file_root}/../../etc/hostname"),
            Source(uri=f"file://{file_root}/missing.md"),
            Source(uri="https://example.com/page.html"),
        ],
    )
    by_id = {p.source_id.rsplit("/", 1)[-1]: p for p in progress}
    assert by_id["policy.md"].status == Progress.INDEXED
    assert by_id["outside.txt"].error.code == "failed_precondition"
    assert by_id["hostname"].error.code == "failed_precondition"
    assert by_id["missing.md"].error.code == "not_found"
    assert by_id["page.html"].error.code == "invalid_request"
    found = await texts(stub, "files", "docs", "where do visitors sign in")
    assert list(found) == [f"file://{file_root}/policy.md"]


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="team-docs")
    s3.put_object(
        Bucket="team-docs",
        Key="guides/deploy.md",
        Body=b"# Deploying\n\nRun the release job, then watch the canary for ten minutes.",
    )
    s3.put_object(Bucket="team-docs", Key="reports/survey.pdf", Body=PDF)
    s3.put_object(Bucket="team-docs", Key="site/index.html", Body=HTML.encode())
    return "team-docs"


async def test_objects_from_a_local_s3_are_ingested_once(stub: Stub, bucket: str, s3_endpoint: str):
    uris = [
        f"s3://{bucket}/guides/deploy.md",
        f"s3://{bucket}/reports/survey.pdf",
        f"s3://{bucket}/site/index.html",
    ]
    sources = [Source(uri=u, metadata={"origin": "s3"}) for u in uris]
    first = await stream(stub, "s3-org", "docs", sources + [Source(uri=f"s3://{bucket}/nope.md")])
    status = {p.source_id: p.status for p in first}
    assert [status[u] for u in uris] == [Progress.INDEXED] * 3
    assert status[f"s3://{bucket}/nope.md"] == Progress.FAILED

    found = await texts(stub, "s3-org", "docs", "how long to watch the canary")
    assert "ten minutes" in found[uris[0]] and "3 metres of ice" in found[uris[1]]
    before = await stub.Search(
        retrieval_pb2.SearchRequest(context=ctx("s3-org"), collection="docs", query="canary", k=3), timeout=30
    )

    # The same objects again: nothing is written, so even the cached answer stays valid.
    second = await stream(stub, "s3-org", "docs", sources)
    assert [p.status for p in second] == [Progress.UNCHANGED] * 3
    chunks = {p.source_id: p.chunks for p in first}
    assert {p.source_id: p.chunks for p in second} == {u: chunks[u] for u in uris}
    again = await stub.Search(
        retrieval_pb2.SearchRequest(context=ctx("s3-org"), collection="docs", query="canary", k=3), timeout=30
    )
    assert again.cached and [c.chunk_id for c in again.chunks] == [c.chunk_id for c in before.chunks]

    # A changed object is indexed anew, replacing its old chunks.
    import boto3

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key="guides/deploy.md", Body=b"# Deploying\n\nReleases now go out on Thursdays only."
    )
    third = await stream(stub, "s3-org", "docs", sources[:1])
    assert third[0].status == Progress.INDEXED
    found = await texts(stub, "s3-org", "docs", "when do releases go out")
    assert "Thursdays" in found[uris[0]] and "canary" not in found[uris[0]]


async def test_stream_level_mistakes_end_the_stream(stub: Stub):
    async def other_org():
        yield retrieval_pb2.IngestStreamRequest(
            context=ctx("victim"), collection="docs", sources=[Source(id="a", text="x")]
        )

    # The token names "sw"; a stream naming another organization is refused, not served.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        [p async for p in stub.IngestStream(other_org(), timeout=30, metadata=auth("retrieval", "sw"))]
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert read_error_detail(info.value).param == "context.org_id"

    async def switching():
        yield retrieval_pb2.IngestStreamRequest(
            context=ctx("sw"), collection="one", sources=[Source(id="a", text="x")]
        )
        await asyncio.sleep(0)
        yield retrieval_pb2.IngestStreamRequest(collection="two", sources=[Source(id="b", text="y")])

    with pytest.raises(grpc.aio.AioRpcError) as info:
        [p async for p in stub.IngestStream(switching(), timeout=30, metadata=auth("retrieval", "sw"))]
    assert read_error_detail(info.value).param == "collection"
