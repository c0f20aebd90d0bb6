"""Request guards: depth, smuggled provider settings, unknown fields, n."""

import json

import pytest
from gateway_service.api.request_guards import MAX_JSON_DEPTH

URL = "/v1/chat/completions"


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.mark.parametrize(
    "extra, code",
    [
        ({"api_base": "http://127.0.0.2:9/v1"}, "forbidden_parameter"),
        ({"metadata": {"deep": [{"base_url": "http://127.0.0.2:9"}]}}, "forbidden_parameter"),
        ({"retrieval": {"collection": "c", "API_KEY": "sk-x"}}, "forbidden_parameter"),
        ({"surprise": 1}, "unrecognized_argument"),
        ({"n": 2}, "unsupported"),
    ],
)
async def test_refused_without_an_upstream_call(gateway, fake, extra, code):
    async with gateway.client() as http:
        response = await http.post(URL, json=chat(gateway.model, **extra))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert fake.requests() == []


async def test_deep_nesting_is_400(gateway, fake):
    deep = "[" * (MAX_JSON_DEPTH + 5) + "]" * (MAX_JSON_DEPTH + 5)
    body = f'{{"model": "{gateway.model}", "messages": [{{"role": "user", "content": "x"}}], "metadata": {deep}}}'
    async with gateway.client() as http:
        response = await http.post(URL, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "too_deep"


async def test_tolerated_openai_fields_and_schema_property_names_pass(gateway):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "fetch",
                "parameters": {"type": "object", "properties": {"base_url": {"type": "string"}}},
            },
        }
    ]
    async with gateway.client() as http:
        plain = await http.post(URL, json=chat(gateway.model, n=1, presence_penalty=0, logprobs=False))
        with_tool = await http.post(
            URL,
            content=json.dumps(chat(gateway.model, tools=tools)),
            headers={"content-type": "application/json"},
        )
    assert plain.status_code == 200, plain.text
    assert with_tool.status_code == 200, with_tool.text
