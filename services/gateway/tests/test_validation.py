import pytest
from gateway_service.api.schemas import ChatCompletionRequest
from gateway_service.api.validation import param_path, validation_error
from pydantic import ValidationError


def errors_for(body: dict) -> list:
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(body)
    # FastAPI reports body errors with a leading "body" location.
    return [{**e, "loc": ("body", *e["loc"])} for e in info.value.errors()]


def test_param_paths_read_like_the_request():
    assert param_path(("body", "messages", 0, "content")) == "messages[0].content"
    assert param_path(("body", "temperature")) == "temperature"
    assert param_path(("query", "limit")) == "limit"
    assert param_path(("body",)) is None


def test_out_of_range_value_names_the_field():
    err = validation_error(errors_for({"messages": [{"role": "user", "content": "hi"}], "temperature": 5}))
    assert (err.status, err.param, err.type) == (400, "temperature", "invalid_request_error")
    assert "temperature" in err.message


def test_nan_is_rejected():
    err = validation_error(
        errors_for({"messages": [{"role": "user", "content": "hi"}], "top_p": float("nan")})
    )
    assert err.param == "top_p"


def test_unsupported_content_part_names_the_part():
    body = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}
    err = validation_error(errors_for(body))
    assert err.param == "messages[0].content[0]"
    assert "'text', 'image_url'" in err.message


def test_an_image_url_that_is_no_url_names_it():
    body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}
    err = validation_error(errors_for(body))
    assert err.param == "messages[0].content[0].image_url.url"


def test_images_are_accepted_in_user_turns_only():
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    err = validation_error(errors_for({"messages": [{"role": "system", "content": [image]}]}))
    assert err.param == "messages[0]" and err.code == "unsupported"


def test_empty_messages_and_bad_role():
    assert validation_error(errors_for({"messages": []})).param == "messages"
    assert (
        validation_error(errors_for({"messages": [{"role": "robot", "content": "x"}]})).param
        == "messages[0].role"
    )


def test_invalid_json_and_missing_body():
    assert validation_error([{"type": "json_invalid", "loc": ("body", 3), "msg": "x"}]).code == "invalid_json"
    assert (
        validation_error([{"type": "missing", "loc": ("body",), "msg": "Field required"}]).code
        == "missing_body"
    )


def test_text_parts_and_stop_string_are_normalised():
    request = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
            ],
            "stop": "###",
            "max_tokens": 5,
            "max_completion_tokens": 9,
            "stream_options": {"include_usage": True},
            "retrieval": {"collection": "docs", "k": 3},
        }
    )
    assert request.messages[0].content == "a\nb"
    assert request.stop == ["###"]
    assert request.token_limit == 9
    assert request.include_usage
    assert request.retrieval is not None and request.retrieval.k == 3


def test_client_supplied_upstream_settings_are_refused():
    body = {"messages": [{"role": "user", "content": "x"}], "api_base": "http://127.0.0.2/"}
    error = validation_error(errors_for(body))
    assert error.code == "forbidden_parameter" and "api_base" in error.message


def test_too_many_stop_sequences():
    body = {"messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}
    assert validation_error(errors_for(body)).param == "stop"
