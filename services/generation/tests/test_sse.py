import itertools

import pytest
from generation_service.sse import SSEError, SSEEvent, SSEParser
from hypothesis import given, settings
from hypothesis import strategies as st


def parse(*pieces: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    return [event for piece in pieces for event in parser.feed(piece)]


def test_data_lines_and_done():
    stream = b'data: {"a": 1}\n\ndata: [DONE]\n\n'
    assert [e.data for e in parse(stream)] == ['{"a": 1}', "[DONE]"]


def test_multi_line_data_joins_with_newline():
    assert parse(b"data: one\ndata: two\ndata\n\n") == [SSEEvent("one\ntwo\n")]


def test_comments_and_unknown_fields_are_ignored():
    assert parse(b": keep-alive\nfoo: bar\ndata: x\n\n: again\n\n") == [SSEEvent("x")]


def test_event_type_and_id():
    events = parse(b"event: error\nid: 7\ndata: boom\n\ndata: next\n\n")
    assert events == [SSEEvent("boom", "error", "7"), SSEEvent("next", "message", "7")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending(eol):
    stream = b"data: a" + eol + b"data: b" + eol + eol + b"data: c" + eol + eol
    assert [e.data for e in parse(stream)] == ["a\nb", "c"]


def test_crlf_split_between_pieces_is_one_line_end():
    assert [e.data for e in parse(b"data: a\r", b"\n\r", b"\n")] == ["a"]


def test_only_one_leading_space_is_removed_and_colonless_lines_count():
    assert parse(b"data:  two spaces\ndata:none\n\n") == [SSEEvent(" two spaces\nnone")]


def test_empty_events_without_data_are_not_dispatched():
    assert parse(b"event: ping\n\n\n\ndata: x\n\n") == [SSEEvent("x")]


def test_incomplete_trailing_event_is_not_dispatched():
    assert parse(b"data: a\n\ndata: cut") == [SSEEvent("a")]


def test_utf8_split_inside_a_character_never_yields_replacement():
    raw = "data: héllo 🌍 日本\n\n".encode()
    events = parse(*(raw[i : i + 1] for i in range(len(raw))))
    assert events == [SSEEvent("héllo 🌍 日本")]


def test_leading_bom_is_dropped_once():
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == [SSEEvent("x")]


def test_oversized_event_is_refused():
    parser = SSEParser(max_event_chars=100)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 200)
    parser = SSEParser(max_event_chars=100)
    with pytest.raises(SSEError):
        for _ in range(30):
            parser.feed(b"data: xxxxx\n")


# Field values never contain line breaks; NUL is left out of ids, which the standard ignores.
_text = st.text(st.characters(exclude_characters="\r\n\ufffd", exclude_categories=("Cs",)), max_size=20)
_event = st.fixed_dictionaries(
    {
        "event": st.none() | _text.filter(bool),
        "id": st.none() | _text.filter(lambda t: "\0" not in t),
        "data": st.lists(_text | st.just("[DONE]"), min_size=1, max_size=4),
        "comment": st.none() | _text,
    }
)


def _encode(events: list[dict], eol: str, bom: bool) -> tuple[bytes, list[SSEEvent]]:
    lines: list[str] = []
    expected: list[SSEEvent] = []
    last_id = None
    for e in events:
        if e["comment"] is not None:
            lines.append(":" + e["comment"])
        if e["event"] is not None:
            lines.append("event: " + e["event"])
        if e["id"] is not None:
            lines.append("id: " + e["id"])
            last_id = e["id"]
        lines.extend("data: " + d for d in e["data"])
        lines.append("")
        expected.append(SSEEvent("\n".join(e["data"]), e["event"] or "message", last_id))
    text = ("\ufeff" if bom else "") + "".join(line + eol for line in lines)
    return text.encode(), expected


@settings(max_examples=300, deadline=None)
@given(
    events=st.lists(_event, min_size=1, max_size=6),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    data=st.data(),
)
def test_any_split_of_a_valid_stream_gives_the_same_events(events, eol, bom, data):
    raw, expected = _encode(events, eol, bom)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=12)))
    bounds = [0, *cuts, len(raw)]
    pieces = [raw[a:b] for a, b in itertools.pairwise(bounds)]
    whole = parse(raw)
    split = parse(*pieces)
    assert whole == expected
    assert split == expected
    assert all("\ufffd" not in e.data for e in split)


def test_an_empty_piece_between_cr_and_lf_keeps_them_one_line_end():
    assert parse(b"event: e\r", b"", b"\ndata: x\r\n\r\n") == [SSEEvent("x", "e")]
