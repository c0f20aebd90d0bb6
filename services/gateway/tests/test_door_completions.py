"""The legacy Completions door's translation, table by table: requests into the internal chat
request (or a 400 naming the field), text_completion objects out."""

import orjson
import pytest
from gateway_service.api.completions import CompletionMeta
from gateway_service.api.doors.completions import (
    DEFAULT_MAX_TOKENS,
    CompletionsRequest,
    TextChunks,
    completion_object,
    to_chat,
)
from gateway_service.api.errors import ApiError
from gateway_service.api.validation import validation_error
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2
from pydantic import ValidationError


def chat_of(**fields):
    return to_chat(CompletionsRequest.model_validate({"model": "m", **fields}))


TRANSLATIONS = [
    ({"prompt": "Once upon"}, {"messages": [{"role": "user", "content": "Once upon"}], "max_tokens": 16}),
    (
        {"prompt": ["Once upon"], "max_tokens": 5},
        {"messages": [{"role": "user", "content": "Once upon"}], "max_tokens": 5},
    ),
    (
        {"prompt": "x", "temperature": 0, "top_p": 0.5, "stop": "\n", "seed": 7, "user": "alice"},
        {"temperature": 0, "top_p": 0.5, "stop": ["\n"], "seed": 7, "user": "alice"},
    ),
    (
        {"prompt": "x", "presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"50256": -100}},
        {"presence_penalty": 0.5, "frequency_penalty": -0.5, "logit_bias": {"50256": -100}},
    ),
    (
        {"prompt": "x", "stream": True, "stream_options": {"include_usage": True}},
        {"stream": True, "stream_options": {"include_usage": True}},
    ),
    (
        {"prompt": "x", "retrieval": {"collection": "docs"}, "cache": False},
        {"retrieval": {"collection": "docs"}, "cache": False},
    ),
    ({"prompt": "x", "n": 1, "best_of": 1, "echo": False, "suffix": None, "logprobs": None}, {}),
]


@pytest.mark.parametrize(("fields", "expected"), TRANSLATIONS)
def test_requests_translate_into_chat_requests(fields, expected):
    body = chat_of(**fields).model_dump(exclude_unset=True)
    for name, value in expected.items():
        if name == "messages":
            assert [{"role": m["role"], "content": m["content"]} for m in body["messages"]] == value
        else:
            assert body[name] == value, name


def test_max_tokens_defaults_to_openais_16():
    assert chat_of(prompt="x").token_limit == DEFAULT_MAX_TOKENS == 16


REFUSED = [
    ({"prompt": [1, 2, 3]}, "prompt", "unsupported"),
    ({"prompt": [[1, 2], [3]]}, "prompt", "unsupported"),
    ({"prompt": ["one", "two"]}, "prompt", "unsupported"),
    ({"prompt": 5}, "prompt", "invalid_value"),
    ({"prompt": "x", "suffix": "end"}, "suffix", "unsupported"),
    ({"prompt": "x", "echo": True}, "echo", "unsupported"),
    ({"prompt": "x", "logprobs": 2}, "logprobs", "unsupported"),
    ({"prompt": "x", "logprobs": 0}, "logprobs", "unsupported"),
    ({"prompt": "x", "best_of": 3}, "best_of", "unsupported"),
    ({"prompt": "x", "n": 2}, "n", "unsupported"),
    ({"prompt": "x", "surprise": True}, None, "unrecognized_argument"),
    ({"prompt": "x", "base_url": "http://evil"}, None, "forbidden_parameter"),
    ({"prompt": "x", "temperature": 3}, "temperature", "invalid_value"),
    ({}, "prompt", "invalid_value"),
]


@pytest.mark.parametrize(("fields", "param", "code"), REFUSED)
def test_what_cannot_be_honoured_is_refused_naming_the_field(fields, param, code):
    with pytest.raises(ValidationError) as info:
        CompletionsRequest.model_validate({"model": "m", **fields})
    err = validation_error(info.value.errors())
    assert err.status == 400 and err.code == code, err.message
    if param is not None:
        assert err.param == param


META = CompletionMeta(model="m", id="cmpl-1", created=1700000000)
FINAL = generation_pb2.Final(
    finish_reason="length", usage=common_pb2.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
)


def test_a_whole_answer_is_a_text_completion():
    assert completion_object(META, "upon a time", FINAL) == {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1700000000,
        "model": "m",
        "choices": [{"text": "upon a time", "index": 0, "logprobs": None, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def test_a_stream_is_one_chunk_per_delta_then_the_finish_and_usage():
    encoder = TextChunks(META, chat_of(prompt="x", stream=True, stream_options={"include_usage": True}))
    chunks = [orjson.loads(p) for p in [encoder.delta("upon"), encoder.delta(" a"), *encoder.finish(FINAL)]]
    assert [c["choices"][0]["text"] for c in chunks[:2]] == ["upon", " a"]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:3]] == [None, None, "length"]
    assert chunks[3]["choices"] == [] and chunks[3]["usage"]["total_tokens"] == 5
    assert {c["id"] for c in chunks} == {"cmpl-1"} and {c["object"] for c in chunks} == {"text_completion"}
    without_usage = TextChunks(META, chat_of(prompt="x", stream=True))
    assert len(without_usage.finish(FINAL)) == 1


def test_a_failure_mid_stream_is_the_openai_error_envelope():
    payload = orjson.loads(TextChunks.error(ApiError(400, "blocked", code="content_policy_violation")))
    assert payload == {
        "error": {
            "message": "blocked",
            "type": "invalid_request_error",
            "param": None,
            "code": "content_policy_violation",
        }
    }
