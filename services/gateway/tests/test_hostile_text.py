"""NUL characters and lone surrogates in client input: a 400 naming where, never a 500, and the
gateway goes on answering. Bodies are sent as raw bytes, with the escapes a client's JSON encoder
writes (`\\u0000`, `\\ud800`)."""

import secrets

import httpx
import pytest
from gateway_service.api.text_guard import CODE

CHAT = "/v1/chat/completions"
JSON = {"content-type": "application/json"}


def raw_chat(model: str, content: str = "hello", extra: str = "") -> bytes:
    # `content` goes in verbatim, so its backslash escapes reach the gateway as the client wrote them.
    messages = '[{"role": "user", "content": "' + content + '"}]'
    return ('{"model": "' + model + '", "messages": ' + messages + extra + ', "cache": false}').encode()


def assert_refused(response: httpx.Response, param: str | None) -> dict:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == CODE
    assert error["param"] == param
    assert "NUL" in error["message"]
    return error


async def assert_still_answers(http: httpx.AsyncClient, model: str) -> None:
    response = await http.post(CHAT, content=raw_chat(model, "still there?"), headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("content", "extra", "param"),
    [
        ("a\\u0000b", "", "messages[0].content"),
        ("lone \\ud800 high", "", "messages[0].content"),
        ("lone \\udc00 low", "", "messages[0].content"),
        ("hi", ', "user": "x\\u0000"', "user"),
        # A NUL or lone surrogate in a field NAME: the param shows it escaped.
        ("hi", ', "\\ud800": 1', "\\ud800"),
        ("hi", ', "stream_options": {"a\\u0000": true}', "stream_options.a\\u0000"),
    ],
)
async def test_nul_and_lone_surrogates_in_a_chat_body_are_400(gateway, fake, content, extra, param):
    async with gateway.client() as http:
        response = await http.post(CHAT, content=raw_chat(gateway.model, content, extra), headers=JSON)
        assert_refused(response, param)
        await assert_still_answers(http, gateway.model)
    # Nothing reached the model.
    assert all("still there?" in str(r) for r in fake.requests())


async def test_an_escaped_surrogate_pair_and_an_escaped_backslash_are_ordinary_text(gateway, fake):
    async with gateway.client() as http:
        # A pair is one character (U+1F600); "\\\\u0000" is a backslash followed by "u0000".
        for content in ("smile \\ud83d\\ude00", "path C:\\\\u0000x"):
            response = await http.post(CHAT, content=raw_chat(gateway.model, content), headers=JSON)
            assert response.status_code == 200, response.text
    said = [m["content"] for r in fake.requests() for m in r["body"]["messages"]]
    assert "smile \U0001f600" in said and "path C:\\u0000x" in said


async def test_nul_in_the_query_string_and_the_path_is_400(gateway, fake):
    async with gateway.client() as http:
        assert_refused(await http.get("/v1/usage?org_id=%00x"), "org_id")
        assert_refused(await http.get("/v1/usage?since=2024-01-01&a%00=1"), "a\\u0000")
        assert_refused(await http.get("/v1/requests/abc%00def"), None)
        await assert_still_answers(http, gateway.model)


async def test_nul_and_lone_surrogates_in_admin_fields_are_400(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org = "org-" + secrets.token_hex(4)
    async with gw.client() as http:
        bad = ('{"id": "' + org + '", "name": "evil\\u0000name"}').encode()
        assert_refused(await http.post("/v1/admin/orgs", content=bad, headers=JSON), "name")
        bad = b'{"name": "key \\ud800", "role": "member"}'
        assert_refused(await http.post("/v1/admin/keys", content=bad, headers=JSON), "name")
        bad = b'{"name": "k", "settings": {"allowed_models": ["m\\u0000"]}}'
        response = await http.post("/v1/admin/keys", content=bad, headers=JSON)
        assert_refused(response, "settings.allowed_models[0]")
        # The same requests without the character are served, and so is everything after.
        ok = await http.post("/v1/admin/orgs", json={"id": org, "name": "evil name"})
        assert ok.status_code == 201, ok.text
        assert (await http.post("/v1/admin/keys", json={"org_id": org, "name": "key"})).status_code == 201
        assert (await http.get("/v1/usage")).status_code == 200
        await assert_still_answers(http, gw.model)
