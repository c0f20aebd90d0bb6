"""`POST /v1/auth/token`: an API key exchanged for a short-lived service token.

Internal teams call retrieval over gRPC directly with such a token; it names the key's
organization and carries the key's retrieval scopes and collection prefixes (or fewer, when asked),
so retrieval never has to trust a tenant named in a request.
"""

from dataclasses import replace
from typing import Literal

import orjson
from fastapi import APIRouter
from llmsuite_common.service_tokens import RETRIEVAL_SCOPES, Caller, implied_scopes
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from ...edge.auth import API_KEY_SCHEME, Identity
from ..deps import IdentityDep, TokenIssuerDep
from ..errors import ApiError

router = APIRouter(dependencies=[API_KEY_SCHEME])


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    audience: Literal["retrieval"] = Field("retrieval", description="The service the token is for.")
    scope: str | None = Field(
        None,
        max_length=200,
        description="Space-separated scopes, a subset of the key's own; omitted means all of them.",
    )


def requested_caller(key: Identity, scope: str | None) -> Caller:
    own = key.retrieval_scopes
    named = frozenset(scope.split()) if scope is not None else own
    unknown = named - set(RETRIEVAL_SCOPES)
    if unknown:
        raise ApiError(
            400, f"unknown scope: {' '.join(sorted(unknown))}", code="invalid_scope", param="scope"
        )
    # A scope brings those below it, as on the key itself: "retrieval:admin" can read too.
    asked = implied_scopes(named)
    if not asked <= own:
        raise ApiError(
            403, f"the key lacks scope: {' '.join(sorted(asked - own))}", code="scope_exceeded", param="scope"
        )
    if not asked:
        raise ApiError(403, "this key has no retrieval scope", code="scope_exceeded", param="scope")
    return replace(key.caller, scopes=asked)


@router.post("/v1/auth/token", response_class=Response)
async def exchange_token(
    body: TokenRequest,
    key: IdentityDep,
    issuer: TokenIssuerDep,
) -> Response:
    caller = requested_caller(key, body.scope)
    expires, token = issuer.issue(caller, body.audience)
    reply = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": max(0, int(expires - issuer.clock())),
        "audience": body.audience,
        "scope": " ".join(sorted(caller.scopes)),
        "organization": caller.org_id,
    }
    if caller.collection_prefixes:
        reply["collection_prefixes"] = list(caller.collection_prefixes)
    # A bearer credential: never stored by caches between here and the caller.
    return Response(orjson.dumps(reply), media_type="application/json", headers={"cache-control": "no-store"})
