from hypothesis import given
from hypothesis import strategies as st

from generation_service.output_limits import Emit, OutputLimits


def run(limits: OutputLimits, chunks: list[str]) -> tuple[str, str]:
    out = []
    for chunk in chunks:
        emit = limits.feed(chunk)
        out.append(emit.text)
        if emit.finish:
            return "".join(out), emit.finish
    return "".join(out) + limits.flush(), ""


def test_stop_sequence_inside_one_chunk_cuts_before_it():
    assert run(OutputLimits(["###"], None), ["Hello", " wor###ld", "more"]) == ("Hello wor", "stop")


def test_stop_sequence_split_across_chunks_is_caught():
    assert run(OutputLimits(["\n###"], None), ["Hello\n", "#", "## next"]) == ("Hello", "stop")


def test_text_that_only_looks_like_a_stop_start_is_released():
    limits = OutputLimits(["\n###"], None)
    assert limits.feed("a\n") == Emit("a")
    assert limits.feed("#b") == Emit("\n#b")
    assert run(OutputLimits(["\n###"], None), ["end\n"]) == ("end\n", "")


def test_without_stops_every_chunk_passes_at_once():
    limits = OutputLimits([], None)
    assert [limits.feed(c) for c in ["a", "\n", "#"]] == [Emit("a"), Emit("\n"), Emit("#")]


def test_chunks_past_the_cap_end_with_length():
    limits = OutputLimits([], 3)
    assert run(limits, ["a", "b", "c", "d", "e"]) == ("abc", "length")
    assert limits.chunks == 4


@given(
    st.text(alphabet="ab#\n", max_size=40),
    st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40),
    st.sampled_from(["#", "##", "\n#", "ab#", "b\nb"]),
)
def test_any_chunking_gives_the_same_text_as_cutting_the_whole(text, sizes, stop):
    chunks, at = [], 0
    for size in sizes:
        if at >= len(text):
            break
        chunks.append(text[at : at + size])
        at += size
    chunks.append(text[at:])
    expected = text.split(stop)[0]
    out, finish = run(OutputLimits([stop], None), chunks)
    assert out == expected
    assert finish == ("stop" if stop in text else "")
