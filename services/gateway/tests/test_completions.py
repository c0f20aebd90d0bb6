import orjson
import pytest
from gateway_service.api.completions import ChunkEncoder, CompletionMeta, chat_completion, citations
from gateway_service.api.errors import ApiError
from gateway_service.api.sse_response import SSE_DONE, sse, sse_events, sse_replay
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from llmsuite.retrieval.v1 import retrieval_pb2

FINAL = generation_pb2.Final(
    finish_reason="length", usage=common_pb2.Usage(prompt_tokens=7, completion_tokens=3, total_tokens=10)
)


def events(raw: bytes) -> list[object]:
    """Parses SSE bytes into the JSON of each data event ("[DONE]" kept as text)."""
    out: list[object] = []
    for block in raw.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[len(b"data: ") :]
            out.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return out


def test_completion_ids_are_unique_and_prefixed():
    a, b = CompletionMeta(model="m"), CompletionMeta(model="m")
    assert a.id.startswith("chatcmpl-") and a.id != b.id


def test_non_stream_completion_shape():
    meta = CompletionMeta(model="m", citations=[{"source_id": "doc", "chunk_id": "c1", "score": 0.5}])
    body = chat_completion(meta, "hello", FINAL)
    assert body["object"] == "chat.completion"
    assert body["model"] == "m"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "hello", "refusal": None}
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
    assert body["citations"] == meta.citations


def test_missing_finish_reason_and_total_are_filled_in():
    final = generation_pb2.Final(usage=common_pb2.Usage(prompt_tokens=2, completion_tokens=1))
    body = chat_completion(CompletionMeta(model="m"), "", final)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["total_tokens"] == 3
    assert "citations" not in body


def test_stream_sequence_with_usage():
    meta = CompletionMeta(model="m", citations=[])
    encoder = ChunkEncoder(meta, include_usage=True)
    raw = b"".join(sse_replay([encoder.delta("Hel"), encoder.delta("lo"), *encoder.finish(FINAL)]))
    assert raw.endswith(SSE_DONE)
    first, second, finish, usage, done = events(raw)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert first["citations"] == []
    assert second["choices"][0]["delta"] == {"content": "lo"} and "citations" not in second
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"]["total_tokens"] == 10
    assert done == "[DONE]"
    assert {c["id"] for c in (first, second, finish, usage)} == {meta.id}
    assert all(c["object"] == "chat.completion.chunk" for c in (first, second, finish, usage))


def test_stream_without_usage_has_no_usage_chunk():
    encoder = ChunkEncoder(CompletionMeta(model="m"), include_usage=False)
    chunks = events(b"".join(sse_replay([encoder.delta("a"), *encoder.finish(FINAL)])))
    assert len(chunks) == 3
    assert all("usage" not in c for c in chunks[:2])
    assert "citations" not in chunks[0]


def test_empty_completion_still_sends_the_role():
    encoder = ChunkEncoder(CompletionMeta(model="m"), include_usage=False)
    role, finish, done = events(b"".join(sse_replay(encoder.finish(FINAL))))
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert finish["choices"][0]["finish_reason"] == "length"
    assert done == "[DONE]"


def test_output_that_looks_like_sse_stays_inside_one_event():
    encoder = ChunkEncoder(CompletionMeta(model="m"), include_usage=False)
    raw = sse_events([encoder.delta("x\n\ndata: [DONE]\n\n")])
    assert raw.count(b"\n\n") == 1
    assert events(raw)[0]["choices"][0]["delta"]["content"] == "x\n\ndata: [DONE]\n\n"


def test_error_event_is_the_envelope_without_done():
    raw = sse_events(
        [
            ChunkEncoder.error(
                ApiError(503, "the generation service is unavailable", code="service_unavailable")
            )
        ]
    )
    assert SSE_DONE not in raw
    assert events(raw) == [
        {
            "error": {
                "message": "the generation service is unavailable",
                "type": "server_error",
                "param": None,
                "code": "service_unavailable",
            }
        }
    ]


def test_citations_from_chunks():
    chunk = retrieval_pb2.Chunk(chunk_id="c1", source_id="doc-1", text="t", score=0.8125)
    assert citations([chunk]) == [{"source_id": "doc-1", "chunk_id": "c1", "score": 0.8125}]


def test_sse_framing():
    assert sse({"a": 1}) == b'data: {"a":1}\n\n'


@pytest.mark.parametrize("include_usage", [False, True])
@pytest.mark.parametrize(
    "content", ["", "plain", 'quote " and \\ slash', "ünïcode ✓", "line\nbreak", "\x00\x1f"]
)
def test_prebuilt_content_delta_matches_full_serialization(include_usage, content):
    # A model name equal to the template's marker must not move the split point.
    model = "\x00"
    encoder = ChunkEncoder(CompletionMeta(model=model), include_usage=include_usage)
    encoder.delta("first")
    expected = {
        "id": encoder._meta.id,
        "object": "chat.completion.chunk",
        "created": encoder._meta.created,
        "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "logprobs": None, "finish_reason": None}],
    }
    if include_usage:
        expected["usage"] = None
    assert sse_events([encoder.delta(content)]) == b"data: " + orjson.dumps(expected) + b"\n\n"
