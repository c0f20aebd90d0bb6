"""The upstream stream decoder end to end: bytes in any pieces -> the same deltas."""

import asyncio
import itertools
import json

from generation_service.upstream import ContentDelta, StreamDone, ToolCallPiece, ToolCallsDelta, _events
from hypothesis import given, settings
from hypothesis import strategies as st

TEXTS = ["Hé", "llo ", "wörld 🌍", "日本語", "\n\ndata: [DONE]\n\n", "data: {}", "\r\n", "ok"]


def stream_bytes(texts: list[str], eol: str) -> bytes:
    def frame(obj: object) -> str:
        data = obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)
        return f"data: {data}{eol}{eol}"

    out = [frame({"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    out += [frame({"choices": [{"index": 0, "delta": {"content": t}}]}) for t in texts]
    out.append(
        frame(
            {
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "c",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": '{"é": 1}'},
                                }
                            ]
                        },
                    }
                ]
            }
        )
    )
    out.append(frame({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}))
    out.append(frame({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": len(texts)}}))
    out.append(frame("[DONE]"))
    return "".join(out).encode()


def decode(raw: bytes, cuts: list[int]) -> list[object]:
    bounds = sorted({c % (len(raw) + 1) for c in cuts} | {0, len(raw)})

    async def pieces():
        for a, b in itertools.pairwise(bounds):
            yield raw[a:b]

    async def run():
        return [e async for e in _events(pieces(), ())]

    return asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.sampled_from(TEXTS), min_size=1, max_size=8),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=60),
)
def test_any_byte_split_yields_identical_deltas(texts, eol, cuts):
    raw = stream_bytes(texts, eol)
    expected = [ContentDelta(t, "assistant" if i == 0 else "") for i, t in enumerate(texts)]
    expected += [
        ToolCallsDelta((ToolCallPiece(0, "c", "function", "f", '{"é": 1}'),), ""),
        StreamDone("tool_calls", {"prompt_tokens": 3, "completion_tokens": len(texts)}, "x"),
    ]
    assert decode(raw, cuts) == expected
    # Every single byte on its own, too.
    assert decode(raw, list(range(len(raw)))) == expected


def test_deltas_of_one_read_are_marked_so_they_can_go_out_together():
    raw = stream_bytes(["a", "b", "c"], "\n")
    together = decode(raw, [])
    content = [e for e in together if isinstance(e, ContentDelta)]
    # One read held everything: each delta but the last event of the read says another follows.
    assert [e.more for e in content] == [True, True, True]
    one_by_one = [e for e in decode(raw, list(range(len(raw)))) if isinstance(e, ContentDelta)]
    assert [e.more for e in one_by_one] == [False, False, False]
