"""Spend from upstream usage, a hard stop at the budget, usage read back through the API."""

import asyncio
import secrets
from datetime import UTC, datetime

from gateway_service.edge.pricing import ModelPrice, cost_usd
from gateway_service.edge.usage import seconds_to_month_end

CHAT = "/v1/chat/completions"
# One dollar per completion token makes every request's cost obvious.
PRICES = {"fake-model": {"prompt_per_1m": 0, "completion_per_1m": 1_000_000}}


def chat(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "one two three"}], **extra}


def test_cost_and_month_end():
    prices = {"m": ModelPrice(prompt_per_1m=2, completion_per_1m=4)}
    assert cost_usd(prices, "m", 1_000_000, 500_000) == 4.0
    assert cost_usd(prices, "unpriced", 10, 10) == 0.0
    assert seconds_to_month_end(datetime(2026, 2, 28, 23, 59, 0, tzinfo=UTC)) == 60
    assert seconds_to_month_end(datetime(2026, 1, 1, tzinfo=UTC)) > 30 * 86400


async def test_budget_is_a_hard_stop_and_usage_is_readable(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(
        gateway_database_url=postgres_dsn, gateway_prices=PRICES, gateway_usage_flush_seconds=0.1
    )
    org = "budget-" + secrets.token_hex(4)
    async with gw.client() as root:
        await root.post("/v1/admin/orgs", json={"id": org})
        created = (
            await root.post(
                "/v1/admin/keys", json={"org_id": org, "role": "admin", "settings": {"budget_usd": 6}}
            )
        ).json()
    fake.script({"content": ["a ", "b ", "c ", "d ", "e "]}, {"content": ["f ", "g "]})
    async with gw.client(api_key=created["key"]) as http:
        first = await http.post(CHAT, json=chat(gw.model))
        assert first.status_code == 200 and first.json()["usage"]["completion_tokens"] == 5
        # Streaming usage counts as well.
        second = await http.post(
            CHAT, json=chat(gw.model, stream=True, stream_options={"include_usage": True})
        )
        assert second.status_code == 200
        refused = None
        for _ in range(100):
            refused = await http.post(CHAT, json=chat(gw.model))
            if refused.status_code == 429:
                break
            await asyncio.sleep(0.05)
        assert refused is not None and refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "budget" and error["type"] == "rate_limit_error"
        assert int(refused.headers["retry-after"]) >= 1

        usage = (await http.get("/v1/usage")).json()
    assert usage["spend_this_month_usd"]["key"] == 7.0
    [row] = usage["data"]
    assert row["key_id"] == created["id"] and row["requests"] == 2
    assert row["completion_tokens"] == 7 and row["cost_usd"] == 7.0


async def test_a_cancelled_stream_is_recorded(start_gateway, postgres_dsn, fake):
    gw = await start_gateway(
        gateway_database_url=postgres_dsn, gateway_prices=PRICES, gateway_usage_flush_seconds=0.1
    )
    org = "cancel-" + secrets.token_hex(4)
    async with gw.client() as root:
        await root.post("/v1/admin/orgs", json={"id": org})
        created = (await root.post("/v1/admin/keys", json={"org_id": org, "role": "admin"})).json()
    fake.script({"chunks": 40, "delay": 0.05})
    async with gw.client(api_key=created["key"]) as http:
        async with http.stream("POST", CHAT, json=chat(gw.model, stream=True)) as response:
            seen = 0
            async for line in response.aiter_lines():
                seen += line.startswith("data: {")
                if seen == 3:
                    break
        rows: list = []
        for _ in range(100):
            rows = (await http.get("/v1/usage")).json()["data"]
            if rows:
                break
            await asyncio.sleep(0.05)
    [row] = rows
    # What was sent before the hang-up is billed: at least the 3 chunks read, far from all 40.
    assert row["requests"] == 1 and 3 <= row["completion_tokens"] < 40
    assert row["cost_usd"] == row["completion_tokens"]
