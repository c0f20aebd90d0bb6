"""Organizations and API keys in PostgreSQL, with a short-lived cache in front for authentication.

A key reads `llms_<id>_<secret>`: the id is public (it names the key in lists, logs and usage), the
secret is shown once at creation. Only SHA-256 of the whole key is stored: a key carries 256 random
bits, so a slow password hash would add latency to every cache miss and no protection.
"""

import hashlib
import hmac
import logging
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any

import orjson
import psycopg
from llmsuite_common.clock import Clock, monotonic
from llmsuite_common.service_tokens import default_scopes
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..api.errors import ApiError
from .auth import Identity
from .policy import LOG_POLICIES, Policy, narrowest_log_policy
from .scopes import SCOPES, granted

KEY_PREFIX = "llms_"
_KEY = re.compile(r"llms_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
ROLES = ("admin", "member")
# Settings a key or an organization may carry, and the Policy field each one sets.
KEY_SETTINGS = {"rpm": "key_rpm", "tpm": "key_tpm", "max_streams": "key_max_streams"}
ORG_SETTINGS = {"rpm": "org_rpm", "tpm": "org_tpm"}
# Per-user limits (end_users.py), set on a key, its organization or both: the tightest applies.
USER_SETTINGS = {"user_rpm": "user_rpm", "user_tpm": "user_tpm"}
LIMIT_NAMES = ("rpm", "tpm", "max_streams", "user_rpm", "user_tpm", "max_tokens")
BUDGET_NAMES = ("budget_usd", "user_budget_usd")
_CACHE_MAX = 10_000
# Key ids found unknown or revoked. Apart from the identities, so a client presenting made-up keys
# can neither evict real keys' entries nor reach the database twice with the same id.
_UNKNOWN_MAX = 100_000
# A cached key whose entry has expired is looked up again; when the database cannot answer (down,
# restarting, failing over) the cached identity goes on being used, for at most this long past its
# expiry, instead of refusing the key's every request with 503 database_busy. A key revoked just
# before an outage may therefore work until the database answers again (the admin API that could
# revoke another is down with it).
STALE_IF_ERROR_SECONDS = 300.0
# Such a lookup waits this long for a connection at most (a stale entry is there to answer), and
# the key is not looked up again for STALE_RETRY_SECONDS: an outage costs one short wait per
# replica and key per second, not a wait on every request.
STALE_LOOKUP_WAIT_SECONDS = 0.5
STALE_RETRY_SECONDS = 1.0
# What says the database cannot answer now: no connection in time, a broken or refused connection,
# a cancelled statement.
DATABASE_UNAVAILABLE = (PoolTimeout, psycopg.OperationalError)

log = logging.getLogger(__name__)


def new_key() -> tuple[str, str]:
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_key_id(token: str) -> str | None:
    match = _KEY.fullmatch(token)
    return match.group(1) if match else None


def _tightest(*values: float) -> float:
    """The lowest limit set (0 = none set)."""
    limits = [v for v in values if v > 0]
    return min(limits) if limits else 0


def policy_of(key_settings: dict[str, Any], org_settings: dict[str, Any]) -> Policy:
    values: dict[str, Any] = {}
    for name, field in KEY_SETTINGS.items():
        values[field] = int(key_settings.get(name) or 0)
    for name, field in ORG_SETTINGS.items():
        values[field] = int(org_settings.get(name) or 0)
    for name, field in USER_SETTINGS.items():
        values[field] = int(_tightest(int(key_settings.get(name) or 0), int(org_settings.get(name) or 0)))
    values["user_budget_usd"] = float(
        _tightest(
            float(key_settings.get("user_budget_usd") or 0), float(org_settings.get("user_budget_usd") or 0)
        )
    )
    models = [
        set(s["allowed_models"]) for s in (key_settings, org_settings) if s.get("allowed_models") is not None
    ]
    if models:
        values["allowed_models"] = frozenset(set.intersection(*models))
    caps = [int(s["max_tokens"]) for s in (key_settings, org_settings) if s.get("max_tokens")]
    values["max_tokens_cap"] = min(caps) if caps else 0
    values["cache_ttl_seconds"] = int(org_settings.get("cache_ttl_seconds", Policy.cache_ttl_seconds))
    values["key_budget_usd"] = float(key_settings.get("budget_usd") or 0)
    values["org_budget_usd"] = float(org_settings.get("budget_usd") or 0)
    values["log_policy"] = narrowest_log_policy(
        org_settings.get("log_policy"), key_settings.get("log_policy")
    )
    values["scopes"] = frozenset(s for s in key_settings.get("scopes") or () if s in SCOPES)
    return Policy(**values)


def creator_settings(creator: Identity) -> dict[str, Any]:
    p = creator.policy
    out: dict[str, Any] = {
        "rpm": p.key_rpm,
        "tpm": p.key_tpm,
        "max_streams": p.key_max_streams,
        "user_rpm": p.user_rpm,
        "user_tpm": p.user_tpm,
        "max_tokens": p.max_tokens_cap,
        "budget_usd": p.key_budget_usd,
        "user_budget_usd": p.user_budget_usd,
        "log_policy": p.log_policy,
        "scopes": sorted(granted(creator)),
    }
    if p.allowed_models is not None:
        out["allowed_models"] = sorted(p.allowed_models)
    return out


def _exceeded(name: str, message: str) -> ApiError:
    return ApiError(403, message, code="scope_exceeded", param=name)


def narrowed(requested: dict[str, Any], creator: Identity) -> dict[str, Any]:
    """The new key's settings: what was asked, checked never to exceed the creator's own scope.

    A limit the creator has (non-zero) is inherited when not asked for, and may only be lowered; so
    may its budget, its model set and its log policy (a key never logs more than its creator).
    Scopes may only be ones the creator holds.
    """
    if creator.superuser:
        return dict(requested)
    own = creator_settings(creator)
    out = dict(requested)
    for name in LIMIT_NAMES:
        mine = int(own.get(name) or 0)
        if not mine:
            continue
        asked = int(requested.get(name) or 0)
        if asked == 0:
            out[name] = mine
        elif asked > mine:
            raise _exceeded(name, f"{name} {asked} exceeds your own limit of {mine}")
    for name in BUDGET_NAMES:
        budget = float(own[name])
        if budget <= 0:
            continue
        asked_budget = float(requested.get(name) or 0)
        if asked_budget == 0:
            out[name] = budget
        elif asked_budget > budget:
            raise _exceeded(name, f"{name} {asked_budget:g} exceeds your own budget of {budget:g}")
    asked_log = requested.get("log_policy")
    if asked_log is None:
        out["log_policy"] = own["log_policy"]
    elif LOG_POLICIES.index(asked_log) < LOG_POLICIES.index(own["log_policy"]):
        raise _exceeded(
            "log_policy", f"log_policy '{asked_log}' keeps more than your own '{own['log_policy']}'"
        )
    if not set(requested.get("scopes") or ()) <= set(own["scopes"]):
        raise _exceeded("scopes", "scopes exceed the scopes your key holds")
    if requested.get("scopes") is None and not default_scopes("member") <= set(own["scopes"]):
        # Unlisted scopes would mean a member's defaults, wider than this creator's own.
        out["scopes"] = own["scopes"]
    mine_prefixes = creator.collection_prefixes
    if mine_prefixes:
        asked_prefixes = requested.get("collection_prefixes")
        if not asked_prefixes:
            out["collection_prefixes"] = list(mine_prefixes)
        elif not all(p.startswith(mine_prefixes) for p in asked_prefixes):
            raise _exceeded(
                "collection_prefixes", "collection_prefixes reach collections your key may not use"
            )
    if "allowed_models" in own:
        asked_models = requested.get("allowed_models")
        if asked_models is None:
            out["allowed_models"] = own["allowed_models"]
        elif not set(asked_models) <= set(own["allowed_models"]):
            raise _exceeded("allowed_models", "allowed_models exceeds the models your key may use")
    return out


@dataclass(frozen=True)
class _Cached:
    expires: float
    secret_hash: bytes
    identity: Identity
    # Past `expires`, the entry still answers while the database cannot, until this time.
    stale_until: float


class KeyStore:
    def __init__(
        self,
        pool_source: Any,
        *,
        cache_ttl_seconds: float,
        unknown_ttl_seconds: float = 30.0,
        clock: Clock = monotonic,
    ) -> None:
        # pool_source.pool is the open AsyncConnectionPool (opened with the app).
        self._db = pool_source
        self._ttl = cache_ttl_seconds
        self._unknown_ttl = unknown_ttl_seconds
        self._clock = clock
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        # key id -> when this replica asks the database about it again.
        self._unknown: OrderedDict[str, float] = OrderedDict()
        # Lookups that reached the database; for tests and the unknown-key guarantee.
        self.database_lookups = 0

    @property
    def _pool(self) -> AsyncConnectionPool:
        pool: AsyncConnectionPool | None = self._db.pool
        if pool is None:
            raise ApiError(503, "the key store is not ready", code="not_ready")
        return pool

    # --- authentication (hot path) -----------------------------------------------------------------

    def cached(self, token: str) -> Identity | None:
        """The identity of a key this replica holds in its cache, without any I/O."""
        key_id = parse_key_id(token)
        entry = self._cache.get(key_id) if key_id is not None else None
        if entry is None or entry.expires <= self._clock():
            return None
        return entry.identity if hmac.compare_digest(entry.secret_hash, key_hash(token)) else None

    async def authenticate(self, token: str) -> Identity | None:
        key_id = parse_key_id(token)
        if key_id is None:
            return None  # malformed keys never reach the database
        now = self._clock()
        cached = self._cache.get(key_id)
        if cached is None or cached.expires <= now:
            if self._unknown.get(key_id, 0.0) > now:
                return None
            if cached is not None and now < cached.stale_until:
                cached = await self._refresh(key_id, cached, now)
            else:
                cached = await self._load(key_id, now)
            if cached is None:
                return None
        return cached.identity if hmac.compare_digest(cached.secret_hash, key_hash(token)) else None

    async def _refresh(self, key_id: str, stale: _Cached, now: float) -> _Cached | None:
        """The key looked up again; the stale entry when the database cannot answer."""
        try:
            return await self._load(key_id, now, wait=STALE_LOOKUP_WAIT_SECONDS)
        except DATABASE_UNAVAILABLE as err:
            log.warning(
                "key lookup failed; using the cached key",
                extra={"key_id": key_id, "error": type(err).__name__},
            )
            retry = replace(stale, expires=now + STALE_RETRY_SECONDS)
            self._cache[key_id] = retry
            return retry

    async def _load(self, key_id: str, now: float, wait: float | None = None) -> _Cached | None:
        self.database_lookups += 1
        async with self._pool.connection(timeout=wait) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT k.id, k.org_id, k.user_id, k.role, k.secret_hash, k.settings, k.revoked_at, "
                "o.settings AS org_settings FROM gateway.api_keys k JOIN gateway.orgs o ON o.id = k.org_id WHERE k.id = %s",
                (key_id,),
            )
            row = await cur.fetchone()
        if row is None or row["revoked_at"] is not None:
            self._cache.pop(key_id, None)
            self._remember_unknown(key_id, now)
            return None
        identity = Identity(
            org_id=row["org_id"],
            key_id=row["id"],
            user_id=row["user_id"] or "",
            role=row["role"],
            policy=policy_of(row["settings"], row["org_settings"]),
            collection_prefixes=tuple(row["settings"].get("collection_prefixes") or ()),
        )
        expires = now + self._ttl
        entry = _Cached(expires, bytes(row["secret_hash"]), identity, expires + STALE_IF_ERROR_SECONDS)
        self._cache[key_id] = entry
        self._cache.move_to_end(key_id)
        while len(self._cache) > _CACHE_MAX:
            self._cache.popitem(last=False)
        return entry

    def _remember_unknown(self, key_id: str, now: float) -> None:
        self._unknown[key_id] = now + self._unknown_ttl
        self._unknown.move_to_end(key_id)
        while len(self._unknown) > _UNKNOWN_MAX:
            self._unknown.popitem(last=False)

    # --- administration ---------------------------------------------------------------------------

    async def create_org(
        self, creator: Identity, org_id: str, name: str, settings: dict[str, Any]
    ) -> dict[str, Any]:
        if not creator.superuser:
            raise ApiError(403, "only the bootstrap administrator may create organizations", code="forbidden")
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "INSERT INTO gateway.orgs (id, name, settings) VALUES (%s, %s, %s) ON CONFLICT (id) DO NOTHING "
                "RETURNING id, name, settings, created_at",
                (org_id, name or org_id, orjson.dumps(settings).decode()),
            )
            row = await cur.fetchone()
        if row is None:
            raise ApiError(409, f"organization '{org_id}' exists already", code="conflict")
        return _public(row)

    async def list_orgs(self, creator: Identity) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            if creator.superuser:
                await cur.execute("SELECT id, name, settings, created_at FROM gateway.orgs ORDER BY id")
            else:
                await cur.execute(
                    "SELECT id, name, settings, created_at FROM gateway.orgs WHERE id = %s", (creator.org_id,)
                )
            return [_public(r) for r in await cur.fetchall()]

    async def ensure_org(self, org_id: str) -> None:
        """The bootstrap key's own organization, so keys can be created in it without a step before."""
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO gateway.orgs (id, name) VALUES (%s, %s) ON CONFLICT (id) DO NOTHING",
                (org_id, org_id),
            )

    async def create_key(
        self,
        creator: Identity,
        *,
        org_id: str | None,
        role: str,
        name: str,
        user_id: str | None,
        settings: dict[str, Any],
    ) -> dict[str, Any]:
        if creator.role != "admin":
            raise ApiError(403, "only admin keys may create keys", code="forbidden")
        org = org_id or creator.org_id
        if org != creator.org_id and not creator.superuser:
            raise ApiError(404, f"organization '{org}' not found", code="not_found", param="org_id")
        if role not in ROLES:
            raise ApiError(400, f"role must be one of {', '.join(ROLES)}", param="role")
        final = narrowed(settings, creator)
        key_id, key = new_key()
        async with self._pool.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute("SELECT 1 FROM gateway.orgs WHERE id = %s", (org,))
            if await cur.fetchone() is None:
                raise ApiError(404, f"organization '{org}' not found", code="not_found", param="org_id")
            if user_id:
                await cur.execute(
                    "INSERT INTO gateway.users (org_id, id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (org, user_id),
                )
            await cur.execute(
                "INSERT INTO gateway.api_keys (id, org_id, user_id, role, name, secret_hash, settings, created_by) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id, org_id, user_id, role, name, settings, created_by, created_at, revoked_at",
                (
                    key_id,
                    org,
                    user_id or None,
                    role,
                    name,
                    key_hash(key),
                    orjson.dumps(final).decode(),
                    creator.key_id,
                ),
            )
            row = await cur.fetchone()
        assert row is not None
        # An id seen before it existed works at once here; other replicas within the unknown-key TTL.
        self._unknown.pop(key_id, None)
        return {**_public(row), "key": key}

    async def list_keys(self, creator: Identity, org_id: str | None) -> list[dict[str, Any]]:
        org = org_id or creator.org_id
        if org != creator.org_id and not creator.superuser:
            raise ApiError(404, f"organization '{org}' not found", code="not_found", param="org_id")
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "SELECT id, org_id, user_id, role, name, settings, created_by, created_at, revoked_at "
                "FROM gateway.api_keys WHERE org_id = %s ORDER BY created_at",
                (org,),
            )
            return [_public(r) for r in await cur.fetchall()]

    async def key_name(self, identity: Identity) -> str | None:
        """The name the caller's own key was created with; None for a key not stored here."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT name FROM gateway.api_keys WHERE id = %s AND org_id = %s",
                (identity.key_id, identity.org_id),
            )
            row = await cur.fetchone()
        return str(row[0]) if row is not None and row[0] is not None else None

    async def revoke_key(self, creator: Identity, key_id: str) -> dict[str, Any]:
        if creator.role != "admin":
            raise ApiError(403, "only admin keys may revoke keys", code="forbidden")
        async with self._pool.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(
                "UPDATE gateway.api_keys SET revoked_at = coalesce(revoked_at, now()) "
                "WHERE id = %s AND (org_id = %s OR %s) "
                "RETURNING id, org_id, user_id, role, name, settings, created_by, created_at, revoked_at",
                (key_id, creator.org_id, creator.superuser),
            )
            row = await cur.fetchone()
        if row is None:
            raise ApiError(404, f"API key '{key_id}' not found", code="not_found")
        self._cache.pop(key_id, None)  # this replica at once; the others within the cache TTL
        return _public(row)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        out[k] = v.isoformat() if hasattr(v, "isoformat") else v
    return out
