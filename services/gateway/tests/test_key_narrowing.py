"""A key never mints a key wider than itself: rates, token cap, budget, models, log policy, scopes."""

import secrets

import pytest
from gateway_service.api.errors import ApiError
from gateway_service.edge.auth import Identity
from gateway_service.edge.keys import narrowed, policy_of
from gateway_service.edge.policy import Policy

ORG = "org-narrow"


def admin(**policy) -> Identity:
    return Identity(org_id=ORG, key_id="creator", role="admin", policy=Policy(**policy))


def refused(requested: dict, creator: Identity) -> ApiError:
    with pytest.raises(ApiError) as caught:
        narrowed(requested, creator)
    assert caught.value.status == 403 and caught.value.code == "scope_exceeded"
    return caught.value


@pytest.mark.parametrize(
    ("name", "field"),
    [("rpm", "key_rpm"), ("tpm", "key_tpm"), ("max_streams", "key_max_streams"), ("user_rpm", "user_rpm")],
)
def test_rates_are_inherited_and_only_lowered(name, field):
    creator = admin(**{field: 10})
    assert narrowed({}, creator)[name] == 10
    assert narrowed({name: 0}, creator)[name] == 10  # 0 would mean unlimited: inherited instead
    assert narrowed({name: 4}, creator)[name] == 4
    assert refused({name: 11}, creator).param == name


def test_token_cap_is_inherited_and_only_lowered():
    creator = admin(max_tokens_cap=256)
    assert narrowed({}, creator)["max_tokens"] == 256
    assert refused({"max_tokens": 257}, creator).param == "max_tokens"


def test_budget_is_inherited_and_only_lowered():
    creator = admin(key_budget_usd=5.0)
    assert narrowed({}, creator)["budget_usd"] == 5.0
    assert narrowed({"budget_usd": 0}, creator)["budget_usd"] == 5.0
    assert narrowed({"budget_usd": 2.5}, creator)["budget_usd"] == 2.5
    assert refused({"budget_usd": 5.01}, creator).param == "budget_usd"
    # Without a budget of its own the creator may set any.
    assert narrowed({"budget_usd": 100}, admin())["budget_usd"] == 100


def test_log_policy_is_inherited_and_only_narrowed():
    creator = admin(log_policy="summary")
    assert narrowed({}, creator)["log_policy"] == "summary"
    assert narrowed({"log_policy": "metadata"}, creator)["log_policy"] == "metadata"
    assert narrowed({"log_policy": "none"}, creator)["log_policy"] == "none"
    assert refused({"log_policy": "full"}, creator).param == "log_policy"
    assert refused({"log_policy": "summary"}, admin(log_policy="none")).param == "log_policy"
    # What the minted key resolves to, under the same organization settings as its creator.
    minted = policy_of(narrowed({}, admin(log_policy="metadata")), {"log_policy": "full"})
    assert minted.log_policy == "metadata"


def test_models_are_inherited_and_only_narrowed():
    creator = admin(allowed_models=frozenset({"a", "b"}))
    assert narrowed({}, creator)["allowed_models"] == ["a", "b"]
    assert narrowed({"allowed_models": ["a"]}, creator)["allowed_models"] == ["a"]
    assert refused({"allowed_models": ["a", "c"]}, creator).param == "allowed_models"


def test_scopes_only_from_a_creator_that_holds_them():
    assert narrowed({"scopes": ["retrieval:admin"]}, admin())["scopes"] == ["retrieval:admin"]
    member = Identity(org_id=ORG, key_id="m", role="member", policy=Policy())
    assert refused({"scopes": ["retrieval:admin"]}, member).param == "scopes"
    granted = Policy(scopes=frozenset({"retrieval:admin"}))
    scoped = Identity(org_id=ORG, key_id="s", role="member", policy=granted)
    assert narrowed({"scopes": ["retrieval:admin"]}, scoped)["scopes"] == ["retrieval:admin"]


async def test_admin_api_refuses_wider_budget_and_log_policy(start_gateway, postgres_dsn):
    gw = await start_gateway(gateway_database_url=postgres_dsn)
    org = "narrow-" + secrets.token_hex(4)
    async with gw.client() as root:
        made_org = await root.post("/v1/admin/orgs", json={"id": org, "settings": {"log_policy": "full"}})
        assert made_org.status_code == 201
        made = await root.post(
            "/v1/admin/keys",
            json={"org_id": org, "role": "admin", "settings": {"budget_usd": 5, "log_policy": "metadata"}},
        )
        assert made.status_code == 201, made.text
    async with gw.client(api_key=made.json()["key"]) as http:
        for settings, param in (({"budget_usd": 6}, "budget_usd"), ({"log_policy": "full"}, "log_policy")):
            wider = await http.post("/v1/admin/keys", json={"settings": settings})
            assert wider.status_code == 403, wider.text
            error = wider.json()["error"]
            assert error["code"] == "scope_exceeded" and error["param"] == param
        child = await http.post("/v1/admin/keys", json={"role": "member"})
        assert child.status_code == 201, child.text
        assert child.json()["settings"]["budget_usd"] == 5
        assert child.json()["settings"]["log_policy"] == "metadata"
