from pathlib import Path

import pytest
from llmsuite_common.errors import FailedPrecondition, InvalidArgument
from retrieval_service.db import Hit, fuse
from retrieval_service.parsing import HTML, MARKDOWN, PDF, PLAIN, content_type, extract_text
from retrieval_service.sources import SourceConfig, SourceFetcher


@pytest.mark.parametrize(
    ("declared", "name", "data", "expected"),
    [
        ("text/markdown; charset=utf-8", "x.pdf", b"# hi", MARKDOWN),
        ("", "s3://b/guide.MD", b"# hi", MARKDOWN),
        ("", "page.htm?version=2", b"<p>x</p>", HTML),
        ("", "doc", b"  %PDF-1.7 ...", PDF),
        ("", "doc", b"<!DOCTYPE html><html>", HTML),
        ("", "notes", b"just words", PLAIN),
    ],
)
def test_content_type_from_declaration_then_name_then_bytes(declared, name, data, expected):
    assert content_type(declared, name, data) == expected


def test_unknown_declared_types_are_refused():
    with pytest.raises(InvalidArgument):
        content_type("application/msword", "x.doc", b"")


def test_html_keeps_structure_and_drops_code_and_navigation():
    text = extract_text(
        b"<html><head><style>p{}</style></head><body><nav>Menu</nav><h2>Hours</h2>"
        b"<p>Open <b>daily</b>.</p><script>alert(1)</script><ol><li>one</li><li>two</li></ol></body></html>",
        HTML,
    )
    assert "## Hours" in text and "Open **daily**." in text
    assert "alert" not in text and "Menu" not in text and "p{}" not in text
    assert "1. one" in text


def test_text_must_be_utf8():
    assert extract_text("\ufeffcafé".encode(), PLAIN) == "café"
    with pytest.raises(InvalidArgument):
        extract_text(b"\xff\xfe\x00bad", PLAIN)


async def test_file_uris_stay_inside_the_roots(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "ok.txt").write_text("fine")
    (tmp_path / "secret.txt").write_text("no")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    fetcher = SourceFetcher(SourceConfig("", "", (root.resolve(),), max_bytes=100))
    assert await fetcher.fetch(f"file://{root}/ok.txt", timeout=5) == b"fine"
    for uri in (f"file://{root}/../secret.txt", f"file://{root}/link.txt", f"file://{tmp_path}/secret.txt"):
        with pytest.raises(FailedPrecondition):
            await fetcher.fetch(uri, timeout=5)
    (root / "big.txt").write_bytes(b"x" * 101)
    with pytest.raises(InvalidArgument):
        await fetcher.fetch(f"file://{root}/big.txt", timeout=5)
    closed = SourceFetcher(SourceConfig("", "", (), max_bytes=100))
    with pytest.raises(FailedPrecondition):
        await closed.fetch(f"file://{root}/ok.txt", timeout=5)


def _hit(i: str, score: float) -> Hit:
    return Hit(i, i, 0, i, {}, score)


def test_reciprocal_rank_fusion_rewards_agreement_and_respects_the_weight():
    vector = [_hit("a", 0.9), _hit("b", 0.8), _hit("c", 0.7)]
    text = [_hit("c", 0.7), _hit("d", 0.1)]
    fused = fuse(vector, text, k=3, text_weight=0.5)
    assert [h.chunk_id for h in fused] == ["c", "a", "b"]  # c is in both lists
    assert fused[0].fused_score == pytest.approx(0.5 / 63 + 0.5 / 61)
    assert [h.chunk_id for h in fuse(vector, text, k=2, text_weight=0.0)] == ["a", "b"]
    assert [h.chunk_id for h in fuse(vector, text, k=2, text_weight=1.0)] == ["c", "d"]
