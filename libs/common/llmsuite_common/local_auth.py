"""A token authority made on the spot, for services run on this machine: `make run`, the
retrieval evaluation and benchmarks, tests. It holds a fresh key pair, verifies like a deployed
service (the same interceptor and verifier) and signs tokens for any caller it is asked for."""

from collections.abc import Sequence
from pathlib import Path

import grpc
from opentelemetry.trace import TracerProvider

from .call_auth import AUTHORIZATION_METADATA_KEY, CallAuthenticator, CallerCredentials
from .grpc_metrics import GrpcServerMetrics
from .service_keys import save_key_pair
from .service_tokens import Caller, SigningKey, TokenIssuer, TokenVerifier, default_scopes
from .stream_driver import server_interceptors


class LocalAuthority:
    def __init__(self, key: SigningKey | None = None, *, ttl_seconds: float = 3600.0) -> None:
        self.key = key or SigningKey.generate()
        self.issuer = TokenIssuer(self.key, ttl_seconds=ttl_seconds, refresh_seconds=ttl_seconds / 5)

    def authenticator(self, audience: str) -> CallAuthenticator:
        return CallAuthenticator(TokenVerifier(self.key.public_keys(), audience))

    def interceptors(
        self,
        audience: str,
        metrics: GrpcServerMetrics | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> Sequence[grpc.aio.ServerInterceptor]:
        return server_interceptors(
            metrics, tracer_provider=tracer_provider, authenticator=self.authenticator(audience)
        )

    @staticmethod
    def caller(
        org_id: str,
        *,
        role: str = "admin",
        key_id: str = "local",
        scopes: frozenset[str] | None = None,
        collection_prefixes: tuple[str, ...] = (),
    ) -> Caller:
        return Caller(
            org_id, key_id, role, default_scopes(role) if scopes is None else scopes, collection_prefixes
        )

    def credentials(self, org_id: str, **caller: object) -> CallerCredentials:
        return CallerCredentials(self.issuer, self.caller(org_id, **caller))  # type: ignore[arg-type]

    def metadata(self, audience: str, org_id: str, **caller: object) -> tuple[tuple[str, str], ...]:
        """Call metadata carrying a token for `org_id`, for raw stubs."""
        header = self.credentials(org_id, **caller).authorization(audience)
        return ((AUTHORIZATION_METADATA_KEY, header or ""),)

    def write(self, directory: Path) -> tuple[Path, Path]:
        """The private key and the JWKS as files, for processes started from here."""
        return save_key_pair(self.key, directory)
