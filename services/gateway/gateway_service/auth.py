"""Bearer-key authentication for /v1/*, done before any body is read or parsed."""

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Security
from fastapi.security import HTTPBearer
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import ApiError, error_response

PROTECTED_PREFIX = "/v1"

# Declares the scheme in the OpenAPI document only; ApiKeyMiddleware does the checking, before the
# body is read, so it also covers unknown /v1 paths.
API_KEY_SCHEME = Security(HTTPBearer(auto_error=False, description="The configured gateway API key."))


@dataclass(frozen=True)
class Identity:
    org_id: str
    # A stable, non-secret handle for the key, for usage records and logs.
    key_id: str


def key_id_for(key: str) -> str:
    return "key_" + hashlib.sha256(key.encode()).hexdigest()[:12]


def bearer_token(authorization: bytes | None) -> bytes | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


def is_protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, *, api_key: str, org_id: str) -> None:
        self.app = app
        self._key = api_key.encode()
        self._identity = Identity(org_id=org_id, key_id=key_id_for(api_key))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        token = bearer_token(authorization)
        if token is None or not hmac.compare_digest(token, self._key):
            message = (
                "missing API key: send it as 'Authorization: Bearer <key>'"
                if token is None
                else "incorrect API key provided"
            )
            await error_response(ApiError(401, message, code="invalid_api_key"))(scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = self._identity
        await self.app(scope, receive, send)
