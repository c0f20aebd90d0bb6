"""The chat request model takes an explicit JSON null wherever a field may be left out, as OpenAI
clients send it; a constraint meant for the value must not be applied to the null (a 500 before)."""

import pytest
from gateway_service.api.schemas import ChatCompletionRequest, Message
from pydantic import BaseModel, ValidationError

USER = {"role": "user", "content": "hi"}


def _nullable(model: type[BaseModel]) -> list[str]:
    fields = model.model_fields.items()
    return sorted(name for name, field in fields if not field.is_required() and field.default is None)


@pytest.mark.parametrize("field", _nullable(ChatCompletionRequest))
def test_an_explicit_null_is_the_field_left_out(field):
    request = ChatCompletionRequest.model_validate({"messages": [USER], field: None})
    assert getattr(request, field) is None


@pytest.mark.parametrize("field", _nullable(Message))
def test_an_explicit_null_in_a_message_is_the_field_left_out(field):
    request = ChatCompletionRequest.model_validate({"messages": [{**USER, field: None}]})
    assert getattr(request.messages[0], field) is None


def test_stop_keeps_its_bounds():
    assert ChatCompletionRequest.model_validate({"messages": [USER], "stop": "###"}).stop == ["###"]
    assert ChatCompletionRequest.model_validate({"messages": [USER], "stop": ["a", "b", "c", "d"]}).stop == [
        "a",
        "b",
        "c",
        "d",
    ]
    for stop in (["a", "b", "c", "d", "e"], [""], ""):
        with pytest.raises(ValidationError) as info:
            ChatCompletionRequest.model_validate({"messages": [USER], "stop": stop})
        assert info.value.errors()[0]["loc"][0] == "stop"
