"""IngestStream with hostile sources: each bad URI or unreadable document fails alone, with its own
error in the stream's results, and the stream goes on with the next document."""

import os
import shutil
from pathlib import Path

import pytest
from llmsuite.common.v1 import common_pb2
from llmsuite.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from retrieval_service.parsing import HTML, MAX_HTML_DEPTH, extract_text

from tests.service_auth import auth

Stub = retrieval_pb2_grpc.RetrievalServiceStub
Progress = retrieval_pb2.IngestProgress
Source = retrieval_pb2.Source
NEXT = Source(id="next", text="The library opens at nine in the morning.")


async def ingest(stub: Stub, collection: str, *sources: Source) -> dict[str, Progress]:
    async def requests():
        yield retrieval_pb2.IngestStreamRequest(
            context=common_pb2.RequestContext(org_id="hostile"), collection=collection, sources=sources
        )

    progress = [
        p async for p in stub.IngestStream(requests(), timeout=120, metadata=auth("retrieval", "hostile"))
    ]
    assert [p.done for p in progress] == list(range(1, len(sources) + 1))
    return {p.source_id: p for p in progress}


def failed_alone(
    results: dict[str, Progress], source_id: str, code: str, param: str = "sources[0].uri"
) -> None:
    """`source_id` failed with `code` about `param`; the document after it was still indexed."""
    bad = results[source_id]
    assert bad.status == Progress.FAILED
    assert (bad.error.code, bad.error.param) == (code, param), bad.error
    assert bad.error.message
    assert results["next"].status in (Progress.INDEXED, Progress.UNCHANGED)


@pytest.fixture(scope="module")
def tree(file_root: Path) -> Path:
    """Files below the allowed root a caller may try to misuse."""
    base = file_root / "hostile"
    base.mkdir()
    (base / "folder").mkdir()
    (base / "loop-a").symlink_to(base / "loop-b")
    (base / "loop-b").symlink_to(base / "loop-a")
    os.mkfifo(base / "pipe.txt")
    (base / "ok.txt").write_text("fine")
    yield base
    shutil.rmtree(base)


MALFORMED = [
    "file://",
    "file:///",
    "file:relative.txt",
    "file://otherhost/etc/passwd",
    "file://[::1/x.txt",
    "s3://",
    "s3:///key.md",
    "s3://bucket",
    "s3://bucket/",
    "s3://bad bucket!/key.md",
    "S3://bucket/a\x00b.md",
    "ftp://example.com/x.txt",
]


@pytest.mark.parametrize("uri", MALFORMED)
async def test_a_malformed_uri_fails_alone(stub: Stub, uri: str):
    results = await ingest(stub, "uris", Source(uri=uri), NEXT)
    failed_alone(results, uri, "invalid_request")


@pytest.mark.parametrize(
    "path",
    [
        "/ok%zz.txt",  # '%' that does not start an escape
        "/ok%4.txt",
        "/%ff%fe.txt",  # escapes that do not decode as UTF-8
        "/ok%00.txt",  # an escaped NUL
        "/ok.txt\x00",  # a raw NUL
        "/ok.txt?version=2",
        "/ok.txt#top",
    ],
)
async def test_a_file_uri_with_bad_encoding_fails_alone(stub: Stub, tree: Path, path: str):
    uri = f"file://{tree}{path}"
    results = await ingest(stub, "uris", Source(uri=uri), NEXT)
    failed_alone(results, uri, "invalid_request")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("folder", "invalid_request"),
        ("loop-a", "invalid_request"),
        ("pipe.txt", "invalid_request"),  # a FIFO would block the reading thread forever
        ("missing.txt", "not_found"),
    ],
)
async def test_a_file_that_cannot_be_read_fails_alone(stub: Stub, tree: Path, name: str, code: str):
    uri = f"file://{tree}/{name}"
    results = await ingest(stub, "files", Source(uri=uri), NEXT)
    failed_alone(results, uri, code)


@pytest.mark.parametrize(
    "uri", ["file:///../../etc/passwd", "file:///etc/passwd", "file://localhost/etc/hostname"]
)
async def test_a_file_outside_the_roots_fails_alone(stub: Stub, uri: str):
    results = await ingest(stub, "files", Source(uri=uri), NEXT)
    failed_alone(results, uri, "failed_precondition")


def small_pdf(resources: bytes = b"<< >>", trailer: bytes = b"<< /Size 5 /Root 1 0 R >>") -> bytes:
    """A one-page PDF built by hand, with the page's resources and the trailer given."""
    out = b"%PDF-1.4\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources "
        + resources
        + b" /Contents 4 0 R >>",
        b"<< /Length 0 >>\nstream\n\nendstream",
    ]
    offsets = []
    for number, content in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + content + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += b"trailer" + trailer + f"\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.mark.parametrize(
    ("source", "param"),
    [
        (
            Source(id="doc", data=b"%PDF-1.7\n\x00\xff garbage", content_type="application/pdf"),
            "sources[0].data",
        ),
        # pypdf raises AttributeError on a trailer that is not a dictionary.
        (
            Source(id="doc", data=small_pdf(trailer=b"0 R >>"), content_type="application/pdf"),
            "sources[0].data",
        ),
        (Source(id="doc", data=small_pdf(b"[" * 50_000 + b"]" * 50_000)), "sources[0].data"),
        (Source(id="doc", data=b"\xff\xfe\xfa not utf-8", content_type="text/plain"), "sources[0].data"),
        (Source(id="doc", data=b"<p>caf\xe9</p>", content_type="text/html"), "sources[0].data"),
    ],
    ids=["garbage-pdf", "trailer-not-a-dict", "nested-pdf", "latin1-text", "latin1-html"],
)
async def test_an_unreadable_document_fails_alone(stub: Stub, source: Source, param: str):
    results = await ingest(stub, "unreadable", source, NEXT)
    failed_alone(results, "doc", "invalid_request", param)


async def test_deeply_nested_html_is_indexed(stub: Stub):
    depth = 100_000  # far past Python's recursion limit, which markdownify's tree walk hits
    markup = (
        "<h1>Deep page</h1>"
        + "<div>" * depth
        + "<p>The vault code is kept by the porter.</p>"
        + "</div>" * depth
    )
    results = await ingest(stub, "deep", Source(id="deep.html", data=markup.encode()), NEXT)
    assert results["deep.html"].status == Progress.INDEXED, results["deep.html"].error
    assert results["deep.html"].chunks >= 1
    assert results["next"].status == Progress.INDEXED


def test_deep_html_keeps_its_text_and_the_markdown_above_the_limit():
    depth = 100_000
    markup = (
        "<h1>Deep page</h1>"
        + "<div>" * depth
        + "<p>The vault code is kept by the porter.</p>"
        + "</div>" * depth
    )
    assert extract_text(markup.encode(), HTML) == "# Deep page\n\nThe vault code is kept by the porter."


def test_html_just_inside_the_depth_limit_is_still_markdown():
    depth = MAX_HTML_DEPTH - 5
    markup = "<div>" * depth + "<h2>Opening hours</h2><p>Open <b>daily</b>.</p>" + "</div>" * depth
    assert extract_text(markup.encode(), HTML) == "## Opening hours\n\nOpen **daily**."
