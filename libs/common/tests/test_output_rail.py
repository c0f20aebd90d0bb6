import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llmsuite_common.rules.output_rail import OutputRail
from llmsuite_common.rules.output_scan import OutputScanner
from llmsuite_common.rules.policy import OutputChecks

SECRET_PIECES = ["AKIA", "IOSF", "ODNN", "7EXA", "MPLE"]


def rail(**output) -> OutputRail:
    return OutputRail(OutputScanner(OutputChecks.model_validate(output)))


def run(r: OutputRail, deltas: list[str], *, step_seconds: float = 0.001):
    released: list[str] = []
    for i, delta in enumerate(deltas):
        step = r.feed(delta, i * step_seconds)
        released += step.released
        if step.blocked:
            return released, step.blocked
    step = r.finish(len(deltas) * step_seconds)
    return released + step.released, step.blocked


def test_unsafe_at_token_40_with_16_token_hold_back_is_never_released():
    deltas = ["ok "] * 40 + SECRET_PIECES + [" and more"] * 10
    released, blocked = run(rail(hold_back_tokens=16), deltas)
    assert blocked and blocked[0].check == "secrets" and blocked[0].action == "block"
    text = "".join(released)
    assert "AKIA" not in text and "MPLE" not in text
    # Everything older than the window went out, one piece per delta; nothing newer did.
    assert released == ["ok "] * 28


def test_without_hold_back_each_delta_goes_out_at_once_and_keeps_its_boundaries():
    r = rail(hold_back_tokens=0)
    assert r.feed("Hello", 0).released == ["Hello"]
    assert r.feed(" world", 0).released == [" world"]
    assert r.finish(0).released == []


def test_hold_back_keeps_n_tokens_and_releases_them_at_the_end():
    r = rail(hold_back_tokens=3)
    out = [r.feed(d, 0).released for d in ["a ", "b ", "c ", "d ", "e "]]
    assert out == [[], [], [], ["a "], ["b "]]
    assert r.finish(0).released == ["c ", "d ", "e "]


def test_time_limit_releases_held_text_without_new_tokens():
    r = rail(hold_back_tokens=16, hold_back_ms=100)
    assert r.feed("slow ", 0.0).released == []
    assert r.next_due() == pytest.approx(0.1)
    assert r.tick(0.05).released == []
    assert r.tick(0.1).released == ["slow "]


def test_email_split_across_deltas_is_redacted_whole():
    released, blocked = run(
        rail(hold_back_tokens=8), ["write to ", "jo", "hn@exa", "mple.c", "om", " today"] + ["ok "] * 10
    )
    assert blocked is None
    text = "".join(released)
    assert "write to [REDACTED:EMAIL] today" in text and "john" not in text and "@" not in text


def test_deny_term_in_output_blocks():
    released, blocked = run(
        rail(hold_back_tokens=4, deny={"terms": ["project falcon"]}),
        ["the ", "Project ", "Fal", "con ", "is"],
    )
    assert blocked and blocked[0].code == "output_denied_term"
    assert "Fal" not in "".join(released)


def test_stream_first_releases_at_once_and_flags_afterwards():
    r = rail(mode="stream_first", hold_back_tokens=16)
    released, blocked = run(r, ["ok "] * 3 + SECRET_PIECES + ["ok "])
    assert blocked is None
    assert "".join(released) == "ok ok ok AKIAIOSFODNN7EXAMPLEok "
    assert [(f.check, f.action) for f in r.state.flags] == [("secrets", "block")]


@settings(max_examples=60, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=40),
    hold=st.integers(min_value=0, max_value=20),
)
def test_released_text_is_the_input_whatever_the_splits(cuts, hold):
    text = "Plain words about volcanoes, tides and coffee machines, nothing sensitive at all here."
    deltas, pos = [], 0
    for c in cuts:
        if pos >= len(text):
            break
        deltas.append(text[pos : pos + c])
        pos += c
    deltas.append(text[pos:])
    released, blocked = run(rail(hold_back_tokens=hold), [d for d in deltas if d])
    assert blocked is None and "".join(released) == text
