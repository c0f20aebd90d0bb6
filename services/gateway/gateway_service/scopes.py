"""Permissions a key holds beyond reading and generating: admins hold every scope, members only the
scopes their key's settings grant (`settings.scopes`), so an organization can let one ingestion key
manage collections without making it an administrator."""

from .auth import Identity
from .errors import ApiError

# The retrieval scopes service tokens carry (llmsuite_common.service_tokens): read (search, list,
# embed), write (create collections), admin (drop collections; add, replace or delete documents:
# an ingest replaces a document of the same id, so it overwrites what others stored).
RETRIEVAL_READ = "retrieval:read"
RETRIEVAL_WRITE = "retrieval:write"
RETRIEVAL_ADMIN = "retrieval:admin"
SCOPES = (RETRIEVAL_READ, RETRIEVAL_WRITE, RETRIEVAL_ADMIN)


def granted(identity: Identity) -> frozenset[str]:
    if identity.role == "admin":
        return frozenset(SCOPES)
    return identity.policy.scopes


def require(identity: Identity, scope: str, action: str) -> None:
    if scope not in granted(identity):
        raise ApiError(
            403,
            f"this API key may not {action}: it needs an admin role or the '{scope}' scope",
            code="insufficient_scope",
        )
