"""Short-lived signed tokens that say whom a gRPC call is for.

The gateway (the only holder of the private key) signs an EdDSA JWT naming the organization, the
API key and what the key may do, for one audience (a service's name), valid for minutes. Services
hold only public keys (a JWKS file): they verify the signature, audience, issuer and expiry, and
take the tenant from the token, never from a request field.

Signing and verifying are off the per-request path: the issuer keeps each (caller, audience) token
until shortly before it expires, and the verifier keeps each verified token until it expires, so a
steady caller costs one dictionary lookup per call on each side.
"""

import base64
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import PermissionDenied, Unauthenticated

ISSUER = "llmsuite-gateway"
ALGORITHM = "EdDSA"
# What a key may do on retrieval: read (search, list, read chunks, embed), write (create
# collections), admin (add, replace or delete documents; drop collections). Each implies the ones
# before it; members hold read and write unless their key lists otherwise.
RETRIEVAL_READ = "retrieval:read"
RETRIEVAL_WRITE = "retrieval:write"
RETRIEVAL_ADMIN = "retrieval:admin"
RETRIEVAL_SCOPES = (RETRIEVAL_READ, RETRIEVAL_WRITE, RETRIEVAL_ADMIN)
ROLE_SCOPES = {
    "admin": frozenset(RETRIEVAL_SCOPES),
    "member": frozenset({RETRIEVAL_READ, RETRIEVAL_WRITE}),
}

Clock = Callable[[], float]


def default_scopes(role: str) -> frozenset[str]:
    return ROLE_SCOPES.get(role, frozenset())


def implied_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """The known retrieval scopes among `scopes`, each with the ones below it (admin > write > read)."""
    own = set(scopes) & set(RETRIEVAL_SCOPES)
    if RETRIEVAL_ADMIN in own:
        own.add(RETRIEVAL_WRITE)
    if RETRIEVAL_WRITE in own:
        own.add(RETRIEVAL_READ)
    return frozenset(own)


def retrieval_scopes(role: str, listed: Iterable[str] = ()) -> frozenset[str]:
    """What a key may do on retrieval: an admin everything; a member what its settings list (with
    what each implies), or read and write when none is listed."""
    if role == "admin":
        return ROLE_SCOPES["admin"]
    return implied_scopes(listed) or default_scopes(role)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a call is for, as a verified token says (or as the gateway is about to sign it)."""

    org_id: str
    key_id: str
    role: str = "member"
    scopes: frozenset[str] = field(default_factory=frozenset)
    # Collections the caller may touch: names starting with one of these; empty means all.
    collection_prefixes: tuple[str, ...] = ()
    expires_at: float = 0.0

    def require_scope(self, scope: str) -> None:
        if scope not in self.scopes:
            raise PermissionDenied(f"this credential lacks the {scope!r} scope", code="insufficient_scope")

    def may_use_collection(self, name: str) -> bool:
        return not self.collection_prefixes or name.startswith(self.collection_prefixes)

    def require_collection(self, name: str, param: str = "collection") -> None:
        if not self.may_use_collection(name):
            raise PermissionDenied(
                f"this credential may not use collection {name!r}", code="collection_forbidden", param=param
            )

    def cache_key(self) -> tuple[Any, ...]:
        return (self.org_id, self.key_id, self.role, self.scopes, self.collection_prefixes)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_jwk(public_key: Ed25519PublicKey) -> dict[str, str]:
    """The key as a JWK, its `kid` the RFC 7638 thumbprint (stable, derived from the key alone)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    members = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    thumbprint = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return {**members, "kid": _b64url(thumbprint)[:16], "alg": ALGORITHM, "use": "sig"}


class SigningKey:
    """The issuer's Ed25519 private key and its key id."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self.private_key = private_key
        self.jwk = public_jwk(private_key.public_key())
        self.kid = self.jwk["kid"]

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> "SigningKey":
        key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError("the token signing key must be an Ed25519 private key (PEM, PKCS#8)")
        return cls(key)

    @classmethod
    def from_file(cls, path: str | Path) -> "SigningKey":
        return cls.from_pem(Path(path).read_bytes())

    def pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def public_keys(self) -> "PublicKeys":
        return PublicKeys.from_jwks({"keys": [self.jwk]})


class PublicKeys:
    """The keys a service accepts, by `kid`: during a rotation the old and the new one."""

    def __init__(self, keys: dict[str, Ed25519PublicKey]) -> None:
        if not keys:
            raise ValueError("no public key to verify service tokens with")
        self.keys = keys

    @classmethod
    def from_jwks(cls, jwks: dict[str, Any]) -> "PublicKeys":
        keys: dict[str, Ed25519PublicKey] = {}
        for jwk in jwks.get("keys", []):
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                raise ValueError("service token keys must be Ed25519 (kty OKP, crv Ed25519)")
            raw = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
            public_key = Ed25519PublicKey.from_public_bytes(raw)
            keys[jwk.get("kid") or public_jwk(public_key)["kid"]] = public_key
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | Path) -> "PublicKeys":
        return cls.from_jwks(json.loads(Path(path).read_text()))


class TokenIssuer:
    """Signs tokens, and keeps each until `refresh_seconds` before it expires."""

    def __init__(
        self,
        key: SigningKey,
        *,
        ttl_seconds: float = 300.0,
        refresh_seconds: float = 60.0,
        clock: Clock = time.time,
        max_cached: int = 10_000,
    ) -> None:
        if refresh_seconds >= ttl_seconds:
            raise ValueError("refresh_seconds must be shorter than ttl_seconds")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._refresh = refresh_seconds
        self.clock = clock
        self._max = max_cached
        self._cache: OrderedDict[tuple[Any, ...], tuple[float, str]] = OrderedDict()

    def token(self, caller: Caller, audience: str) -> str:
        return self.issue(caller, audience)[1]

    def issue(self, caller: Caller, audience: str) -> tuple[float, str]:
        """(expiry, token) for `caller` and `audience`, from the cache while it has time left."""
        cache_key = (audience, *caller.cache_key())
        now = self.clock()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] - self._refresh > now:
            return hit
        expires = int(now + self.ttl_seconds)
        entry = (float(expires), self.sign(caller, audience, now=now, expires=expires))
        self._cache[cache_key] = entry
        self._cache.move_to_end(cache_key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return entry

    def sign(self, caller: Caller, audience: str, *, now: float, expires: float) -> str:
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": audience,
            "sub": caller.key_id,
            "org": caller.org_id,
            "role": caller.role,
            "scope": " ".join(sorted(caller.scopes)),
            "iat": int(now),
            "exp": int(expires),
        }
        if caller.collection_prefixes:
            claims["collections"] = list(caller.collection_prefixes)
        return jwt.encode(claims, self._key.private_key, algorithm=ALGORITHM, headers={"kid": self._key.kid})


class TokenVerifier:
    """Checks tokens for one audience with public keys only; keeps verified ones until they expire."""

    def __init__(
        self,
        keys: PublicKeys,
        audience: str,
        *,
        clock: Clock = time.time,
        leeway_seconds: float = 30.0,
        max_cached: int = 10_000,
    ) -> None:
        self._keys = keys
        self.audience = audience
        self._clock = clock
        self._leeway = leeway_seconds
        self._max = max_cached
        self._verified: OrderedDict[str, Caller] = OrderedDict()

    def verify(self, token: str) -> Caller:
        caller = self._verified.get(token)
        now = self._clock()
        if caller is not None:
            if caller.expires_at + self._leeway > now:
                return caller
            del self._verified[token]
            raise Unauthenticated("the token has expired", code="token_expired")
        caller = self._decode(token, now)
        self._verified[token] = caller
        while len(self._verified) > self._max:
            self._verified.popitem(last=False)
        return caller

    def _decode(self, token: str, now: float) -> Caller:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.keys.get(header.get("kid", ""))
            if key is None:
                raise Unauthenticated("the token was signed with an unknown key", code="invalid_token")
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=ISSUER,
                leeway=self._leeway,
                options={
                    "require": ["exp", "iat", "aud", "iss", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidAudienceError:
            raise Unauthenticated(f"the token is not for {self.audience}", code="wrong_audience") from None
        except jwt.PyJWTError:
            raise Unauthenticated(
                "the token is malformed or its signature is invalid", code="invalid_token"
            ) from None
        # Expiry against the injected clock rather than PyJWT's own.
        expires = float(claims["exp"])
        if expires + self._leeway <= now:
            raise Unauthenticated("the token has expired", code="token_expired")
        org = claims.get("org")
        if not isinstance(org, str) or not org:
            raise Unauthenticated("the token names no organization", code="invalid_token")
        prefixes = claims.get("collections") or ()
        return Caller(
            org_id=org,
            key_id=str(claims["sub"]),
            role=str(claims.get("role", "")),
            scopes=frozenset(str(claims.get("scope", "")).split()),
            collection_prefixes=tuple(str(p) for p in prefixes),
            expires_at=expires,
        )
