"""Every door (chat, Anthropic Messages, legacy Completions) behaves as the others at the edge and in
the pipeline: a guardrail block mid-stream and a client that leaves end each API's stream its own
way and cancel the upstream; idempotency, rate limits and usage rows are the same whichever door a
request came through. Real HTTP, real guardrails and generation, the scripted fake upstream."""

import asyncio
import secrets

import pytest
from gateway_service.edge.end_users import end_user_id

from services.gateway.tests.doors import CHAT, COMPLETIONS, DOOR_IDS, DOORS, MESSAGES

SECRET = "AKIAIOSFODNN7EXAMPLE"
# One dollar per completion token makes every request's cost obvious.
PRICES = {"fake-model": {"prompt_per_1m": 0, "completion_per_1m": 1_000_000}}


@pytest.mark.parametrize("door", DOORS, ids=DOOR_IDS)
async def test_a_guardrail_block_mid_stream_ends_the_stream_its_way_and_cancels_the_upstream(
    gateway, fake, door
):
    fake.script({"content": ["ok "] * 3 + [SECRET + " "] + ["more "] * 40, "delay": 0.05})
    async with gateway.client() as c:
        response = await c.post(door.path, json=door.body(gateway.model, "tell me", None, stream=True))
    assert response.status_code == 200, response.text
    assert SECRET[:4].encode() not in response.content
    ending = door.ending(response.content)
    assert ending.text.startswith("ok ok") and not ending.completed
    assert ending.error is not None and "content policy violation" in ending.error["message"]
    if door.anthropic:
        assert ending.error["type"] == "invalid_request_error"
    else:
        assert ending.error["code"] == "content_policy_violation"
    connection = (await fake.wait_until_closed(timeout=5))[-1]
    assert connection["closed_by"] == "client" and connection["chunks_sent"] < 44


@pytest.mark.parametrize("door", DOORS, ids=DOOR_IDS)
async def test_a_client_that_leaves_cancels_the_upstream(gateway, fake, door):
    fake.script({"chunks": 50, "delay": 0.2})
    async with gateway.client() as c:
        body = door.body(gateway.model, "count", None, stream=True, max_tokens=100)
        async with c.stream("POST", door.path, json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    break
    connection = (await fake.wait_until_closed(timeout=5))[-1]
    assert connection["closed_by"] == "client" and connection["chunks_sent"] < 50


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("door", DOORS, ids=DOOR_IDS)
async def test_idempotency_replays_each_doors_own_answer(gateway, fake, door, stream):
    key = {"idempotency-key": "order-" + secrets.token_hex(6)}
    body = door.body(gateway.model, "hello there friend", None, stream=stream)
    async with gateway.client() as c:
        first = await c.post(door.path, json=body, headers=key)
        again = await c.post(door.path, json=body, headers=key)
        other = await c.post(door.path, json={**body, "temperature": 0.5}, headers=key)
    assert first.status_code == again.status_code == 200, first.text
    assert again.headers["idempotency-replayed"] == "true" and again.content == first.content
    assert len(fake.requests()) == 1
    assert other.status_code == 422
    assert "idempotency" in door.error_of(other.json())["message"].lower()


async def test_an_idempotency_key_never_replays_another_doors_answer(gateway, fake):
    key = {"idempotency-key": "shared-" + secrets.token_hex(6)}
    async with gateway.client() as c:
        chat = await c.post(CHAT.path, json=CHAT.body(gateway.model, "hi", None, max_tokens=64), headers=key)
        messages = await c.post(MESSAGES.path, json=MESSAGES.body(gateway.model, "hi", None), headers=key)
    assert chat.status_code == 200
    assert messages.status_code == 422
    assert MESSAGES.error_of(messages.json())["type"] == "invalid_request_error"


async def test_rate_limits_count_every_door_alike(start_gateway, fake):
    gateway = await start_gateway(gateway_key_rpm=3)
    async with gateway.client() as c:
        for door in DOORS:
            served = await c.post(door.path, json=door.body(gateway.model, "hi", None))
            assert served.status_code == 200, (door.name, served.text)
        for door in DOORS:
            refused = await c.post(door.path, json=door.body(gateway.model, "hi", None))
            assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
            error = door.error_of(refused.json())
            if door.anthropic:
                assert error["type"] == "rate_limit_error" and "requests per minute" in error["message"]
            else:
                assert error["code"] == "key_rpm" and error["type"] == "rate_limit_error"
    assert len(fake.requests()) == 3


# --- with keys and the request log in PostgreSQL ----------------------------------------------------


async def _org_key(gw, key_settings: dict | None = None, org_settings: dict | None = None) -> str:
    org = "doors-" + secrets.token_hex(4)
    async with gw.client() as root:
        assert (
            await root.post("/v1/admin/orgs", json={"id": org, "settings": org_settings or {}})
        ).status_code == 201
        created = await root.post(
            "/v1/admin/keys", json={"org_id": org, "role": "admin", "settings": key_settings or {}}
        )
    assert created.status_code == 201, created.text
    return str(created.json()["key"])


@pytest.fixture
async def logged(start_gateway, postgres_dsn):
    return await start_gateway(
        gateway_database_url=postgres_dsn, gateway_prices=PRICES, gateway_usage_flush_seconds=0.1
    )


async def _rows(http, end_user: str, count: int) -> list[dict]:
    rows: list[dict] = []
    for _ in range(100):
        rows = (await http.get("/v1/requests", params={"end_user": end_user})).json()["data"]
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.05)
    return rows


# What a usage row says of the request itself, whichever door it came through.
SAME = ("key_id", "org_id", "model", "prompt_tokens", "completion_tokens", "cost_usd", "status")
SAME += ("finish_reason", "stream", "end_user", "cancelled", "input_verdict", "output_verdict", "log_policy")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_usage_rows_are_the_same_through_every_door(logged, fake, stream):
    key = await _org_key(logged)
    end_user = "carol-" + secrets.token_hex(3)
    async with logged.client(api_key=key) as http:
        for door in DOORS:
            fake.script({"content": ["a ", "b ", "c "]})
            body = door.body(logged.model, "one two three", end_user, stream=stream)
            if stream and door is not MESSAGES:
                body["stream_options"] = {"include_usage": True}
            response = await http.post(door.path, json=body)
            assert response.status_code == 200, (door.name, response.text)
        rows = await _rows(http, end_user, 3)
        usage = (await http.get("/v1/usage", params={"end_user": end_user})).json()
    assert sorted(r["route"] for r in rows) == sorted(d.path for d in DOORS)
    assert len({tuple(r[f] for f in SAME) for r in rows}) == 1, rows
    assert rows[0]["completion_tokens"] == 3 and rows[0]["end_user"] == end_user_id(end_user)
    assert [(u["route"], u["requests"], u["cost_usd"]) for u in usage["data"]] == sorted(
        (d.path, 1, 3.0) for d in DOORS
    )
    assert usage["spend_this_month_usd"]["end_user"] == 9.0


async def test_an_end_user_is_limited_per_user_whichever_door_names_it(logged, fake):
    key = await _org_key(logged, {"user_rpm": 3})
    async with logged.client(api_key=key) as http:
        codes = [
            (await http.post(door.path, json=door.body(logged.model, "hi", "alice"))).status_code
            for door in DOORS * 7
        ][:20]
        refused = await http.post(MESSAGES.path, json=MESSAGES.body(logged.model, "hi", "alice"))
        other = await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "bob"))
        anonymous = await http.post(COMPLETIONS.path, json=COMPLETIONS.body(logged.model, "hi", None))
    assert codes.count(200) == 3 and codes.count(429) == 17
    assert refused.status_code == 429 and "this user" in MESSAGES.error_of(refused.json())["message"]
    assert other.status_code == 200 and anonymous.status_code == 200


async def test_per_user_limits_set_on_the_organization_apply_too(logged, fake):
    key = await _org_key(logged, org_settings={"user_rpm": 2})
    async with logged.client(api_key=key) as http:
        codes = [
            (await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "dave"))).status_code
            for _ in range(5)
        ]
        refused = await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "dave"))
    assert codes == [200, 200, 429, 429, 429]
    assert refused.json()["error"]["code"] == "user_rpm"


async def test_an_end_users_tokens_per_minute_are_reserved_and_limited(logged, fake):
    key = await _org_key(logged, {"user_tpm": 100})
    # The first answer uses 60 completion tokens of the minute; the second's reservation does not fit.
    fake.script({"chunks": 60}, {"chunks": 60})
    async with logged.client(api_key=key) as http:
        first = await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "erin", max_tokens=60))
        second = await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "erin", max_tokens=60))
        other = await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "frank", max_tokens=60))
    assert first.status_code == 200 and other.status_code == 200
    assert second.status_code == 429 and second.json()["error"]["code"] == "user_tpm"


async def test_an_end_users_budget_is_a_hard_stop_for_that_user_only(logged, fake):
    key = await _org_key(logged, {"user_budget_usd": 4})
    async with logged.client(api_key=key) as http:
        fake.script({"content": ["a ", "b ", "c ", "d ", "e "]})
        assert (await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "gina"))).status_code == 200
        refused = None
        for _ in range(100):
            refused = await http.post(MESSAGES.path, json=MESSAGES.body(logged.model, "hi", "gina"))
            if refused.status_code == 429:
                break
            await asyncio.sleep(0.05)
        other = await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", "hank"))
    assert refused is not None and refused.status_code == 429, refused.text
    assert "end user budget" in MESSAGES.error_of(refused.json())["message"]
    assert other.status_code == 200


async def test_the_request_log_lists_an_end_users_requests_and_the_cli_reads_them(
    logged, fake, monkeypatch, capsys
):
    import json

    from gateway_service import cli

    key = await _org_key(logged)
    async with logged.client(api_key=key) as http:
        for user in ("ivy", "ivy", "jack"):
            assert (await http.post(CHAT.path, json=CHAT.body(logged.model, "hi", user))).status_code == 200
        rows = await _rows(http, "ivy", 2)
    assert len(rows) == 2 and {r["end_user"] for r in rows} == {end_user_id("ivy")}
    monkeypatch.setenv("LLMSUITE_URL", logged.url)
    monkeypatch.setenv("LLMSUITE_API_KEY", key)

    def run(*argv: str) -> dict:
        assert cli.main(list(argv)) == 0
        return json.loads(capsys.readouterr().out)

    listed = await asyncio.to_thread(run, "requests", "list", "--end-user", "jack")
    assert [r["end_user"] for r in listed["data"]] == [end_user_id("jack")]
    usage = await asyncio.to_thread(run, "usage", "--end-user", "ivy")
    assert [row["requests"] for row in usage["data"]] == [2] and usage["data"][0]["end_user"] == "ivy"
