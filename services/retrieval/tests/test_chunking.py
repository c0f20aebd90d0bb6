import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from retrieval_service.chunking import approx_tokens, chunk_text


def sentences(prefix: str, n: int, words: int = 6) -> str:
    return " ".join(
        f"{prefix}{i} " + " ".join(f"w{prefix}{i}x{j}" for j in range(words - 1)) + "." for i in range(n)
    )


def test_blank_text_has_no_chunks():
    assert chunk_text("  \n\n \t", max_tokens=50, overlap_tokens=10) == []


def test_short_text_is_one_chunk_without_surrounding_space():
    assert chunk_text("\n  Hello there. How are you?  \n", max_tokens=50, overlap_tokens=10) == [
        "Hello there. How are you?"
    ]


def test_paragraphs_that_fit_are_never_split():
    first, second = sentences("a", 4), sentences("b", 4)  # about 24 tokens each
    chunks = chunk_text(f"{first}\n\n{second}", max_tokens=40, overlap_tokens=0)
    assert chunks == [first, second]


def test_windows_line_endings_still_mark_paragraphs():
    first, second = sentences("a", 4), sentences("b", 4)
    assert chunk_text(f"{first}\r\n\r\n{second}", max_tokens=40, overlap_tokens=0) == [first, second]


def test_cut_prefers_the_paragraph_break_over_a_later_sentence_end():
    first, second = sentences("a", 4), sentences("b", 4)
    chunks = chunk_text(f"{first}\n\n{second}", max_tokens=35, overlap_tokens=0)
    assert chunks[0] == first


def test_next_chunk_starts_with_the_end_of_the_previous_one():
    text = sentences("s", 20)
    chunks = chunk_text(text, max_tokens=30, overlap_tokens=8)
    assert len(chunks) > 2
    for before, after in itertools.pairwise(chunks):
        last_sentence = before.rsplit(". ", 1)[-1]
        assert after.startswith(last_sentence.rstrip("."))


def test_no_overlap_across_a_heading():
    body = sentences("a", 5)
    text = f"# Install\n{body}\n\n## Usage\n{sentences('b', 2)}"
    chunks = chunk_text(text, max_tokens=40, overlap_tokens=10)
    assert chunks[0].startswith("# Install")
    assert chunks[1].startswith("## Usage")


def test_a_heading_stays_with_the_text_it_introduces():
    text = f"{sentences('a', 5)}\n\n# Next\n{sentences('b', 2)}"
    for chunk in chunk_text(text, max_tokens=36, overlap_tokens=0):
        assert not chunk.rstrip().endswith("# Next")


def test_list_items_are_cut_between_items():
    items = "\n".join(f"- item{i} " + " ".join(f"w{i}x{j}" for j in range(5)) for i in range(12))
    chunks = chunk_text(f"Options:\n{items}", max_tokens=30, overlap_tokens=0)
    assert len(chunks) > 1
    for chunk in chunks[1:]:
        assert chunk.startswith("- item")


def test_a_sentence_longer_than_the_budget_is_cut_between_words():
    text = " ".join(f"word{i}" for i in range(200))
    chunks = chunk_text(text, max_tokens=25, overlap_tokens=5)
    assert all(approx_tokens(c) <= 25 for c in chunks)
    assert "word0" in chunks[0] and "word199" in chunks[-1]


def test_a_word_longer_than_the_budget_is_cut_into_pieces():
    blob = "QUJD" * 500
    chunks = chunk_text(blob, max_tokens=20, overlap_tokens=0)
    assert all(approx_tokens(c) <= 20 for c in chunks)
    assert "".join(chunks) == blob


def test_the_callers_token_counter_decides_the_size():
    def by_characters(text: str) -> int:
        return len(text)

    chunks = chunk_text(sentences("a", 10), max_tokens=60, overlap_tokens=0, count_tokens=by_characters)
    assert len(chunks) > 3
    assert all(len(c) <= 60 for c in chunks)


def test_indented_code_keeps_its_indentation():
    text = "Example:\n    def f():\n        return 1"
    assert chunk_text(text, max_tokens=50, overlap_tokens=0) == [text]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(0, 0), (10, 10), (10, -1)])
def test_bad_budgets_are_rejected(max_tokens: int, overlap: int):
    with pytest.raises(ValueError):
        chunk_text("text", max_tokens=max_tokens, overlap_tokens=overlap)


def _numbered(doc: str) -> str:
    """Distinct words, so a chunk's position in the source is unambiguous."""
    counter = itertools.count()
    return re.sub(r"\bw\b", lambda _: f"w{next(counter)}", doc)


_word = st.just("w")
_sentence = st.lists(_word, min_size=1, max_size=30).map(lambda ws: " ".join(ws) + ".")
_paragraph = st.lists(_sentence, min_size=1, max_size=6).map(" ".join)
_document = st.lists(_paragraph, min_size=1, max_size=6).map("\n\n".join).map(_numbered)


@settings(max_examples=150, deadline=None)
@given(doc=_document, max_tokens=st.integers(8, 120), overlap_share=st.floats(0, 0.5))
def test_chunks_fit_and_cover_every_word_in_order(doc: str, max_tokens: int, overlap_share: float):
    overlap = int(max_tokens * overlap_share)
    chunks = chunk_text(doc, max_tokens=max_tokens, overlap_tokens=overlap)
    assert all(0 < approx_tokens(c) <= max_tokens for c in chunks)
    source = doc.replace(".", " .").split()
    # Each chunk is a contiguous run of the source's words, starting no earlier than
    # the previous chunk, and together the runs leave no word out.
    covered_to = 0
    start_floor = 0
    for chunk in chunks:
        words = chunk.replace(".", " .").split()
        start = next(i for i in range(start_floor, len(source)) if source[i : i + len(words)] == words)
        assert start <= covered_to, "a gap between chunks"
        covered_to = max(covered_to, start + len(words))
        start_floor = start
    assert covered_to == len(source)


def test_every_section_of_a_long_document_opens_its_own_chunk():
    sections = "\n\n".join(f"## Section {i}\n\n{sentences(f's{i}x', 14)}" for i in range(4))
    chunks = chunk_text(f"# Manual\n\n{sections}", max_tokens=70, overlap_tokens=10)
    for chunk in chunks:
        assert "## Section" not in chunk.removeprefix("# Manual\n\n")[1:], "a heading inside a chunk"
    assert sum(c.removeprefix("# Manual\n\n").startswith("## Section") for c in chunks) == 4
