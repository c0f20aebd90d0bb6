"""The client's address, trusting X-Forwarded-For only as far as the configured proxy hops."""

from starlette.types import Scope


def client_ip(scope: Scope, trusted_hops: int) -> str | None:
    peer = scope.get("client")
    peer_ip = peer[0] if peer else None
    if trusted_hops <= 0:
        return peer_ip
    forwarded: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            forwarded.extend(p.strip() for p in value.decode("latin-1").split(",") if p.strip())
    if not forwarded:
        return peer_ip
    # Each trusted proxy appends the address it saw; entries left of those are the client's to invent.
    return forwarded[-min(trusted_hops, len(forwarded))]
