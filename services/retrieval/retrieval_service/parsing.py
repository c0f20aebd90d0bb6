"""Text out of plain text, Markdown, HTML and PDF bytes, keeping the structure chunking cuts at.

HTML becomes Markdown (markdownify) so its headings and paragraphs reach the chunker as
`#` lines and blank lines; PDF pages come out through pypdf, a blank line between pages.
"""

import io
import logging
from pathlib import PurePosixPath

from llmsuite_common.errors import InvalidArgument

log = logging.getLogger(__name__)

PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
CONTENT_TYPES = (PLAIN, MARKDOWN, HTML, PDF)
SUFFIXES = {
    ".txt": PLAIN,
    ".text": PLAIN,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
}
# Elements whose text is never document content.
_DROPPED_TAGS = ("script", "style", "noscript", "template", "svg", "head", "nav", "footer")


def content_type(declared: str, name: str, data: bytes) -> str:
    """The declared type (parameters ignored), else the name's extension, else sniffed from the bytes."""
    kind = declared.split(";", 1)[0].strip().lower()
    if kind:
        if kind not in CONTENT_TYPES:
            raise InvalidArgument(
                f"content_type must be one of {', '.join(CONTENT_TYPES)}", param="content_type"
            )
        return kind
    by_suffix = SUFFIXES.get(PurePosixPath(name.split("?", 1)[0]).suffix.lower())
    if by_suffix:
        return by_suffix
    head = data[:1024].lstrip().lower()
    if head.startswith(b"%pdf-"):
        return PDF
    if head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
        return HTML
    return PLAIN


def extract_text(data: bytes, kind: str) -> str:
    """Document text of `data`; blocking (PDF parsing is CPU work): call off the event loop."""
    if kind == PDF:
        return _pdf(data)
    text = _decode(data)
    if kind == HTML:
        return _html(text)
    return text


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArgument("text is not valid UTF-8", param="data") from None


def _html(markup: str) -> str:
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    soup = BeautifulSoup(markup, "html.parser")
    for tag in soup(_DROPPED_TAGS):
        tag.decompose()
    return MarkdownConverter(heading_style="ATX", bullets="-", strip=["a", "img"]).convert_soup(soup).strip()


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidArgument("the PDF is encrypted", param="data")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except (PyPdfError, ValueError, KeyError, TypeError) as exc:
        log.info("unreadable pdf", extra={"error": type(exc).__name__})
        raise InvalidArgument("the PDF could not be read", param="data") from exc
    return "\n\n".join(p for p in pages if p)
