"""Service tokens for tests that call a gRPC service with raw stubs.

`tenant_channel` opens a channel whose every unary-request call carries a token for the
organization its request names in `context.org_id` (or `default_org`), signed by a
LocalAuthority the server trusts: tests keep writing requests as callers do. A call given its own
`authorization` metadata keeps it. Request-streaming calls pass `metadata=auth(...)` themselves:
grpc.aio's intercepted request streams race a server that ends the call while the client writes.
"""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from llmsuite_common.local_auth import LocalAuthority

# The one authority of every in-process test server (imported by absolute name, so one key pair
# per test run whichever conftest or test module uses it).
AUTHORITY = LocalAuthority()


def auth(audience: str, org: str, **caller: Any) -> tuple[tuple[str, str], ...]:
    """Call metadata with a token for `org` (an admin unless `role`/`scopes` say otherwise)."""
    return AUTHORITY.metadata(audience, org, **caller)


class _TenantToken:
    def __init__(
        self, authority: LocalAuthority, audience: str, default_org: str, caller: dict[str, Any]
    ) -> None:
        self._authority = authority
        self._audience = audience
        self._default_org = default_org
        self._caller = caller

    def _details(self, details: Any, request: Any) -> Any:
        if any(key == "authorization" for key, _ in details.metadata or ()):
            return details  # the test chose its credential
        context = getattr(request, "context", None)
        org = getattr(context, "org_id", "") or self._default_org
        metadata = [*(details.metadata or ()), *self._authority.metadata(self._audience, org, **self._caller)]
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _Unary(_TenantToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details, request), request)


class _UnaryStream(_TenantToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details, request), request)


def tenant_channel(
    target: str, authority: LocalAuthority, audience: str, *, default_org: str = "default", **caller: Any
) -> grpc.aio.Channel:
    interceptors = [cls(authority, audience, default_org, caller) for cls in (_Unary, _UnaryStream)]
    return grpc.aio.insecure_channel(target, interceptors=interceptors)


@contextlib.asynccontextmanager
async def serving(app: Any, metrics: Any = None, *, tracer_provider: Any = None) -> AsyncIterator[int]:
    """`app` (what serve() runs) behind serve()'s interceptor, trusting AUTHORITY, on a loopback
    port; yields the port, and stops the app and the server after."""
    server = grpc.aio.server(
        interceptors=AUTHORITY.interceptors(app.audience, metrics, tracer_provider=tracer_provider)
    )
    app.add_to_server(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await app.start()
    try:
        yield port
    finally:
        await app.stop()
        await server.stop(None)
