"""Who a gRPC call is for: checked once per call on the server, attached once per call by clients.

Server side: the one server interceptor (stream_driver) asks a CallAuthenticator for the caller of
every call but health checks (and reflection, when left open), and binds it for the handler;
handlers read the tenant with tenant_of(request.context), never from the request alone.

Client side: a TracedStub given OutboundCredentials attaches `authorization: Bearer <token>` for
its audience, signed for the caller the current task acts for (acting_as()).
"""

import contextvars
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .errors import PermissionDenied, Unauthenticated
from .service_tokens import Caller, TokenIssuer, TokenVerifier

AUTHORIZATION_METADATA_KEY = "authorization"
HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")

# The verified caller of the call being handled (server side).
caller_var: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("grpc_caller", default=None)
# The caller the current task makes calls for (client side).
acting_caller_var: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "acting_caller", default=None
)


def current_caller() -> Caller:
    caller = caller_var.get()
    if caller is None:
        raise Unauthenticated("this call carries no credential", code="missing_credential")
    return caller


def tenant_of(context: Any) -> str:
    """The organization a call acts on: the verified caller's. A request's own `context.org_id` may
    repeat it or be empty; naming another organization is refused rather than ignored, so a caller
    learns at once that its request was not what it meant."""
    caller = current_caller()
    asked = getattr(context, "org_id", "") if context is not None else ""
    if asked and asked != caller.org_id:
        raise PermissionDenied(
            "context.org_id names another organization than the credential",
            code="org_mismatch",
            param="context.org_id",
        )
    return caller.org_id


def bearer(metadata: Sequence[Any]) -> str | None:
    for item in metadata:
        if item.key == AUTHORIZATION_METADATA_KEY:
            scheme, _, token = str(item.value).partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


class CallAuthenticator:
    """Verifies the bearer token of each call against this service's audience."""

    def __init__(self, verifier: TokenVerifier, *, reflection_open: bool = True) -> None:
        self._verifier = verifier
        self._open = (HEALTH_PREFIX, *REFLECTION_PREFIXES) if reflection_open else (HEALTH_PREFIX,)

    def is_open(self, method: str) -> bool:
        return method.startswith(self._open)

    def caller(self, metadata: Sequence[Any]) -> Caller:
        token = bearer(metadata)
        if token is None:
            raise Unauthenticated(
                "missing credential: send 'authorization: Bearer <token>' metadata", code="missing_credential"
            )
        return self._verifier.verify(token)


@contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    """Calls made inside carry a token for `caller` (background work outside a request)."""
    token = acting_caller_var.set(caller)
    try:
        yield
    finally:
        acting_caller_var.reset(token)


class CallCredentials(Protocol):
    def authorization(self, audience: str) -> str | None:
        """The `authorization` metadata value for a call to `audience`, or None for none."""


class OutboundCredentials:
    """Tokens for the caller the current task acts for, from the issuer's cache."""

    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    def authorization(self, audience: str) -> str | None:
        caller = acting_caller_var.get()
        if caller is None:
            return None
        return "Bearer " + self.issuer.token(caller, audience)


class StaticCredentials:
    """One token for every call (a token a team obtained, a test's)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def authorization(self, audience: str) -> str | None:
        return "Bearer " + self.token


class CallerCredentials:
    """Tokens for one fixed caller, signed per audience (a process holding the signing key)."""

    def __init__(self, issuer: TokenIssuer, caller: Caller) -> None:
        self._issuer = issuer
        self.caller = caller

    def authorization(self, audience: str) -> str | None:
        return "Bearer " + self._issuer.token(self.caller, audience)
