from gateway_service.api.request_id import MAX_REQUEST_ID_LENGTH, request_id_from, sane_request_id
from hypothesis import given
from hypothesis import strategies as st


def test_sane_ids_are_kept():
    assert sane_request_id("abc-123_X.9") == "abc-123_X.9"
    assert sane_request_id(b"req-1") == "req-1"
    assert sane_request_id("a" * MAX_REQUEST_ID_LENGTH) == "a" * MAX_REQUEST_ID_LENGTH


def test_insane_ids_are_dropped():
    for bad in ["", "a" * (MAX_REQUEST_ID_LENGTH + 1), "has space", "new\nline", "semi;colon", "é", None]:
        assert sane_request_id(bad) is None, bad
    assert sane_request_id(b"\xff\xfe") is None


def test_missing_or_insane_ids_are_replaced_by_fresh_ones():
    first, second = request_id_from(None), request_id_from("bad id")
    assert first != second
    assert sane_request_id(first) == first and sane_request_id(second) == second


@given(st.text(max_size=200))
def test_whatever_comes_in_the_id_used_is_sane(value):
    assert sane_request_id(request_id_from(value)) is not None
