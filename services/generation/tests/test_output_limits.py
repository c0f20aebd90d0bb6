from generation_service.output_limits import Emit, OutputLimits
from hypothesis import given
from hypothesis import strategies as st


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


def test_a_whole_answer_is_cut_at_the_cap_then_at_the_first_stop():
    limits = OutputLimits(["\n###"], 4)
    words = "".join(f"w{i} " for i in range(10))
    # 10 tokens by the upstream's count, 4 allowed: the first 4 of its 10 words.
    assert limits.whole(words, 10) == Emit("w0 w1 w2 w3 ", "length")
    assert limits.whole("a b\n### c d e f", 6) == Emit("a b", "stop")
    # The stop lies past the cap: the cap ends it first, as in a stream.
    assert limits.whole("a b c d e\n### f", 8) == Emit("a b c d ", "length")
    assert limits.whole("a b", 2) == Emit("a b")
    assert OutputLimits([], None).whole("anything\n###", 99) == Emit("anything\n###")


def test_chunks_without_a_stop_start_pass_at_once_and_held_text_still_completes_a_stop():
    limits = OutputLimits(["\n###", "END"], None)
    assert limits.feed("plain words") == Emit("plain words")
    assert limits.feed("tail\n") == Emit("tail")
    assert limits.feed("plain") == Emit("\nplain")
    assert limits.feed("x E") == Emit("x ")
    assert limits.feed("ND more") == Emit("", "stop")
