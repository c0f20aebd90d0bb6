"""Admin API for organizations and API keys; every call is scoped by the calling key."""

from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME, Identity
from ...edge.keys import KeyStore
from ..deps import IdentityDep, KeysDep
from ..errors import ApiError

_ID = r"^[A-Za-z0-9._-]{1,64}$"
# Settings are stored as JSON in Postgres and read back on every key lookup: an integer beyond the
# exact range of a JSON number, or a budget that Postgres prints back as an integer of hundreds of
# digits, could be stored but never served again (orjson refuses integers past 64 bits).
MAX_LIMIT = 2**53 - 1
MAX_BUDGET_USD = 1e12


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rpm: int | None = Field(None, ge=0, le=MAX_LIMIT)
    tpm: int | None = Field(None, ge=0, le=MAX_LIMIT)
    max_streams: int | None = Field(None, ge=0, le=MAX_LIMIT)
    # Per user a request speaks for: the key's own user, and the end user it names (`user`).
    user_rpm: int | None = Field(None, ge=0, le=MAX_LIMIT)
    user_tpm: int | None = Field(None, ge=0, le=MAX_LIMIT)
    max_tokens: int | None = Field(None, ge=0, le=MAX_LIMIT)
    allowed_models: list[str] | None = Field(None, max_length=256)
    budget_usd: float | None = Field(None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)
    user_budget_usd: float | None = Field(None, ge=0, le=MAX_BUDGET_USD, allow_inf_nan=False)
    log_policy: Literal["full", "summary", "metadata", "none"] | None = None


class KeySettings(Limits):
    # Permissions beyond the role (scopes.py), e.g. `retrieval:admin` for a member key that ingests.
    scopes: list[Literal["retrieval:read", "retrieval:write", "retrieval:admin"]] | None = Field(
        None, max_length=8
    )
    # The key reaches only collections whose names start with one of these (a team's own).
    collection_prefixes: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]] | None = Field(
        None, max_length=16
    )


class OrgSettings(Limits):
    cache_ttl_seconds: int | None = Field(None, ge=0, le=30 * 86400)


class CreateOrg(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=_ID)
    name: str = Field("", max_length=200)
    settings: OrgSettings = OrgSettings()


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    org_id: str | None = Field(None, pattern=_ID)
    role: Literal["admin", "member"] = "member"
    name: str = Field("", max_length=200)
    user_id: str | None = Field(None, pattern=_ID)
    settings: KeySettings = KeySettings()


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json")


router = APIRouter(prefix="/v1/admin", dependencies=[API_KEY_SCHEME], tags=["admin"])


def admin_store(keys: KeyStore | None, identity: Identity) -> KeyStore:
    """The key store, for an admin key; checked in each handler, after its body was validated."""
    if keys is None:
        raise ApiError(
            501,
            "key management needs a database: set GATEWAY_DATABASE_URL or GATEWAY_PGSERVER_DATA_DIR",
            code="not_configured",
        )
    if identity.role != "admin":
        raise ApiError(403, "this API key is not an admin key", code="forbidden")
    return keys


@router.post("/orgs", response_class=Response, status_code=201)
async def create_org(body: CreateOrg, keys: KeysDep, who: IdentityDep) -> Response:
    ks = admin_store(keys, who)
    org = await ks.create_org(who, body.id, body.name, body.settings.model_dump(exclude_none=True))
    return _json(org, 201)


@router.get("/orgs", response_class=Response)
async def list_orgs(keys: KeysDep, who: IdentityDep) -> Response:
    ks = admin_store(keys, who)
    return _json({"object": "list", "data": await ks.list_orgs(who)})


@router.post("/keys", response_class=Response, status_code=201)
async def create_key(body: CreateKey, keys: KeysDep, who: IdentityDep) -> Response:
    ks = admin_store(keys, who)
    created = await ks.create_key(
        who,
        org_id=body.org_id,
        role=body.role,
        name=body.name,
        user_id=body.user_id,
        settings=body.settings.model_dump(exclude_none=True),
    )
    return _json(created, 201)


@router.get("/keys", response_class=Response)
async def list_keys(keys: KeysDep, who: IdentityDep, org_id: str | None = None) -> Response:
    ks = admin_store(keys, who)
    return _json({"object": "list", "data": await ks.list_keys(who, org_id)})


@router.delete("/keys/{key_id}", response_class=Response)
async def revoke_key(key_id: str, keys: KeysDep, who: IdentityDep) -> Response:
    ks = admin_store(keys, who)
    return _json(await ks.revoke_key(who, key_id))
