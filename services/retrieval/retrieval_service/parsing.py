"""Text out of plain text, Markdown, HTML and PDF bytes, keeping the structure chunking cuts at.

HTML becomes Markdown (markdownify) so its headings and paragraphs reach the chunker as
`#` lines and blank lines; PDF pages come out through pypdf, a blank line between pages.

Bytes are hostile input: any failure of a parser on them is an InvalidArgument for that
document, never an internal error. Markdownify walks the tree recursively, so elements nested
deeper than MAX_HTML_DEPTH are flattened to their text first (the structure above them stays).
Text extracted from bytes has NUL removed and lone surrogates replaced by U+FFFD: PostgreSQL
text cannot hold either, both are artefacts of the file (UTF-16 text read as UTF-8, PDF glyphs
without a Unicode mapping), and the caller cannot edit them out. Inline text is the caller's
own and is checked, not cleaned (see validation).
"""

import io
import logging
import re
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
# Deeper than any real page's markup, and far from what markdownify's recursion (a few frames
# per level) can take under Python's default limit of 1000 frames.
MAX_HTML_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")


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
        return clean(_pdf(data))
    text = _decode(data)
    if kind == HTML:
        text = _html(text)
    return clean(text)


def clean(text: str) -> str:
    """`text` without NUL and with lone surrogates replaced, so PostgreSQL takes it."""
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidArgument("text is not valid UTF-8", param="data") from None


def _html(markup: str) -> str:
    from bs4 import BeautifulSoup
    from markdownify import MarkdownConverter

    try:
        soup = BeautifulSoup(markup, "html.parser")
        for tag in soup(_DROPPED_TAGS):
            tag.decompose()
        _flatten_below(soup, MAX_HTML_DEPTH)
        converter = MarkdownConverter(heading_style="ATX", bullets="-", strip=["a", "img"])
        return converter.convert_soup(soup).strip()
    except Exception as exc:  # noqa: BLE001 - whatever the markup does to the parser
        log.info("unreadable html", extra={"error": type(exc).__name__})
        raise InvalidArgument("the HTML could not be read", param="data") from exc


def _flatten_below(soup, limit: int) -> None:  # type: ignore[no-untyped-def]
    """Replaces each element at depth `limit` by its text, walking the tree without recursion."""
    from bs4 import NavigableString, Tag

    deepest: list[Tag] = []
    stack: list[tuple[Tag, int]] = [(soup, 0)]
    while stack:
        tag, depth = stack.pop()
        for child in tag.children:
            if isinstance(child, Tag):
                if depth + 1 >= limit:
                    deepest.append(child)
                else:
                    stack.append((child, depth + 1))
    for tag in deepest:
        # get_text walks descendants iteratively; a blank line keeps the pieces apart for the chunker.
        tag.replace_with(NavigableString(tag.get_text("\n\n", strip=True)))


def _pdf(data: bytes) -> str:
    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise InvalidArgument("the PDF is encrypted", param="data")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except InvalidArgument:
        raise
    except Exception as exc:  # noqa: BLE001 - pypdf raises far more than PyPdfError on hostile bytes
        log.info("unreadable pdf", extra={"error": type(exc).__name__})
        raise InvalidArgument("the PDF could not be read", param="data") from exc
    return "\n\n".join(p for p in pages if p)
