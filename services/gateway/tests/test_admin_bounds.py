"""Organization and key settings stay within what can be stored and served back: a limit beyond the
exact range of a JSON number, or a budget Postgres would print back as an integer of hundreds of
digits, is refused with 400 instead of being stored and breaking every later listing with a 500."""

import secrets

import pytest


@pytest.fixture
async def keyed(start_gateway, postgres_dsn):
    return await start_gateway(gateway_database_url=postgres_dsn)


@pytest.mark.parametrize(
    ("name", "value"),
    [("rpm", 2**64), ("tpm", 2**53), ("max_tokens", 10**30), ("budget_usd", 6.55e209), ("budget_usd", 1e20)],
)
async def test_out_of_range_settings_are_refused_and_listing_still_works(keyed, name, value):
    org = "org-" + secrets.token_hex(4)
    async with keyed.client() as root:
        refused = await root.post("/v1/admin/orgs", json={"id": org, "settings": {name: value}})
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["param"] == f"settings.{name}"
        refused = await root.post("/v1/admin/keys", json={"settings": {name: value}})
        assert refused.status_code == 400, refused.text
        assert (await root.get("/v1/admin/orgs")).status_code == 200
        assert (await root.get("/v1/admin/keys")).status_code == 200


async def test_the_largest_settings_are_stored_and_served_back(keyed):
    org = "org-" + secrets.token_hex(4)
    settings = {"rpm": 2**53 - 1, "tpm": 2**53 - 1, "budget_usd": 1e12}
    async with keyed.client() as root:
        made = await root.post("/v1/admin/orgs", json={"id": org, "settings": settings})
        assert made.status_code == 201, made.text
        key = await root.post("/v1/admin/keys", json={"org_id": org, "settings": settings})
        assert key.status_code == 201, key.text
        listed = {o["id"]: o for o in (await root.get("/v1/admin/orgs")).json()["data"]}
        assert listed[org]["settings"]["rpm"] == 2**53 - 1
        assert float(listed[org]["settings"]["budget_usd"]) == 1e12
        assert (await root.get("/v1/admin/keys", params={"org_id": org})).status_code == 200
