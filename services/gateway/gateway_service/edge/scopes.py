"""What a key may do on retrieval: admins everything, members what their key's settings list
(`settings.scopes`) or read and write, so an organization can let one ingestion key manage
collections without making it an administrator. The rule itself is
llmsuite_common.service_tokens.retrieval_scopes: the retrieval service applies the same scopes to
the token the gateway signs for the key."""

from llmsuite_common.service_tokens import RETRIEVAL_ADMIN, RETRIEVAL_READ, RETRIEVAL_SCOPES, RETRIEVAL_WRITE

from ..api.errors import ApiError
from .auth import Identity

SCOPES = RETRIEVAL_SCOPES
__all__ = ["RETRIEVAL_ADMIN", "RETRIEVAL_READ", "RETRIEVAL_WRITE", "SCOPES", "granted", "require"]


def granted(identity: Identity) -> frozenset[str]:
    return identity.retrieval_scopes


def require(identity: Identity, scope: str, action: str) -> None:
    if scope not in granted(identity):
        raise ApiError(
            403,
            f"this API key may not {action}: it needs an admin role or the '{scope}' scope",
            code="insufficient_scope",
        )
