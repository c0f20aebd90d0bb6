"""API-key authentication for /v1/*, done before any body is read or parsed: the key comes as
`Authorization: Bearer <key>` (OpenAI's clients) or `x-api-key: <key>` (Anthropic's)."""

import hashlib
import hmac
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Protocol

from fastapi import Security
from fastapi.security import HTTPBearer
from llmsuite_common.call_auth import acting_caller_var
from llmsuite_common.service_tokens import Caller, retrieval_scopes
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api import server_timing
from ..api.client_ip import client_ip
from ..api.errors import ApiError, error_response, shape_for
from .policy import Policy

if TYPE_CHECKING:
    from .auth_failures import AuthFailures

PROTECTED_PREFIX = "/v1"

# Declares the scheme in the OpenAPI document only; ApiKeyMiddleware does the checking, before the
# body is read, so it also covers unknown /v1 paths.
API_KEY_SCHEME = Security(HTTPBearer(auto_error=False, description="The configured gateway API key."))


@dataclass(frozen=True)
class Identity:
    org_id: str
    # A stable, non-secret handle for the key, for usage records and logs.
    key_id: str
    user_id: str = ""
    role: str = "admin"
    policy: Policy = field(default_factory=Policy)
    # The configured bootstrap key: may act on every organization through the admin API.
    superuser: bool = False
    # Collections the key may touch: names starting with one of these; empty means all.
    collection_prefixes: tuple[str, ...] = ()

    @cached_property
    def retrieval_scopes(self) -> frozenset[str]:
        """What the key may do on retrieval: its role's, or what its settings list (service_tokens)."""
        return retrieval_scopes(self.role, self.policy.scopes)

    @cached_property
    def caller(self) -> Caller:
        """Whom backend calls are made for: the service tokens the gateway signs name this."""
        return Caller(
            org_id=self.org_id,
            key_id=self.key_id,
            role=self.role,
            scopes=self.retrieval_scopes,
            collection_prefixes=self.collection_prefixes,
        )


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


def request_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key a request presents: its bearer token, else its `x-api-key` header."""
    authorization = api_key = None
    for name, value in headers:
        if name == b"authorization":
            authorization = value
        elif name == b"x-api-key":
            api_key = value.strip()
    return bearer_token(authorization) or api_key or None


def is_protected(path: str) -> bool:
    return path == PROTECTED_PREFIX or path.startswith(PROTECTED_PREFIX + "/")


class KeyResolver(Protocol):
    async def authenticate(self, token: str) -> "Identity | None":
        """The identity of a stored key, or None for an unknown, revoked or malformed one."""

    def cached(self, token: str) -> "Identity | None":
        """The identity of a key held in memory, without any I/O; None when not held."""


class ApiKeyMiddleware:
    """Checks the bearer key of every /v1 request (HTTP and WebSocket handshakes alike).

    The configured key (GATEWAY_API_KEY) is the bootstrap admin; other keys come from the key store,
    which caches what it reads so most requests never reach the database. Failed attempts count
    against the client's address (`failures`); past its limit the address gets 429.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        bootstrap: "Identity",
        api_key: str,
        keys: KeyResolver | None = None,
        failures: "AuthFailures | None" = None,
        trusted_proxy_hops: int = 0,
    ) -> None:
        self.app = app
        self._key = api_key.encode()
        self._identity = bootstrap
        self._keys = keys
        self._failures = failures
        self._hops = trusted_proxy_hops

    def _known(self, token: bytes) -> "Identity | None":
        """The bootstrap key or a key held in the store's cache: no I/O."""
        if hmac.compare_digest(token, self._key):
            return self._identity
        if self._keys is None or not token.isascii():
            return None
        return self._keys.cached(token.decode("ascii"))

    async def current_identity(self, token: bytes) -> "Identity | None":
        """The key's identity now (the store's cache, else the database), None once it is revoked."""
        identity = self._known(token)
        if identity is None and self._keys is not None and token.isascii():
            identity = await self._keys.authenticate(token.decode("ascii"))
        return identity

    async def _authenticate(self, token: bytes | None, scope: Scope) -> "Identity | ApiError":
        if token is None:
            return ApiError(
                401,
                "missing API key: send it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                code="invalid_api_key",
            )
        identity = self._known(token)
        if identity is not None:
            return identity
        guard = self._failures if self._failures is not None and self._failures.enabled else None
        ip = client_ip(scope, self._hops) if guard is not None else None
        if guard is not None and (refused := guard.refusal(ip)) is not None:
            return refused
        if self._keys is not None and token.isascii():
            identity = await self._keys.authenticate(token.decode("ascii"))
            if identity is not None:
                return identity
        if guard is not None and (refused := await guard.failed(ip)) is not None:
            return refused
        return ApiError(401, "incorrect API key provided", code="invalid_api_key")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        token = request_key(scope["headers"])
        with server_timing.hop("auth"):
            identity = await self._authenticate(token, scope)
        if isinstance(identity, ApiError):
            await refuse(identity, scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = identity
        if scope["type"] == "websocket" and token is not None:
            # An open socket outlives its handshake: routes/ws.py re-checks the key while it lives.
            scope["state"]["key_check"] = partial(self.current_identity, token)
        # Backend calls made for this request carry a token naming this key (call_auth).
        acting = acting_caller_var.set(identity.caller)
        try:
            await self.app(scope, receive, send)
        finally:
            acting_caller_var.reset(acting)


async def refuse(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Answers a request or a WebSocket handshake with `error`, before any route runs."""
    if scope["type"] == "websocket":
        await reject_websocket(error, scope, receive, send)
    else:
        await error_response(error, shape_for(scope["path"]))(scope, receive, send)


async def reject_websocket(error: ApiError, scope: Scope, receive: Receive, send: Send) -> None:
    """Refuses a handshake with the HTTP error, where the server supports it, else a policy close."""
    from starlette.websockets import WebSocket

    ws = WebSocket(scope, receive, send)
    try:
        await ws.send_denial_response(error_response(error))
    except RuntimeError:
        await ws.close(code=1008, reason=error.message[:120])
