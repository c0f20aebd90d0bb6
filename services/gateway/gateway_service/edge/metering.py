"""Limits, budgets and usage rows for the routes beside chat (collections, search, embeddings).

Each request is admitted as a chat request is: the key's, user's, organization's and address's
requests per minute, tokens per minute where the route knows its tokens (embeddings), the spend
budget; and each one admitted gets its row in the request log, so /v1/usage counts it. The rows
carry the route and, for embeddings, the model and its tokens (priced like any model in
GATEWAY_PRICES); no text of the request is kept.
"""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from llmsuite_common.request_context import request_id_var
from starlette.requests import Request

from ..api.client_ip import client_ip
from ..api.errors import ApiError
from .auth import Identity
from .limits import Limiter
from .request_log import Outcome
from .usage import UsageRecorder


@dataclass
class Meter:
    """What the route reports back: the model used and the tokens it took."""

    model: str = ""
    tokens: int = 0
    # RateLimit-* of the admission, for the response.
    headers: dict[str, str] = field(default_factory=dict)


class Metering:
    def __init__(self, limiter: Limiter, usage: UsageRecorder, *, trusted_proxy_hops: int) -> None:
        self._limiter = limiter
        self._usage = usage
        self._hops = trusted_proxy_hops

    @asynccontextmanager
    async def metered(
        self, request: Request, route: str, *, model: str = "", reserve_tokens: int = 0
    ) -> AsyncIterator[Meter]:
        identity: Identity = request.state.identity
        ip = client_ip(request.scope, self._hops)
        self._usage.check_capacity()
        await self._usage.check_budget(identity, ip)
        admission = await self._limiter.admit(identity, ip, tokens=reserve_tokens)
        started = time.perf_counter()
        meter = Meter(model=model, headers=dict(admission.headers))
        try:
            yield meter
        except BaseException as err:
            if isinstance(err, ApiError):
                status, code = err.status, err.code or ""
            else:
                status, code = 500, "internal_error"
            self._record(identity, meter, route, started, status=status, error_code=code, tokens=0)
            raise
        else:
            self._record(identity, meter, route, started, tokens=meter.tokens)
        finally:
            # A reservation is reconciled with the tokens the route reported; without one, nothing to do.
            self._limiter.run_later(admission.finish(meter.tokens if reserve_tokens else None))

    def _record(
        self,
        identity: Identity,
        meter: Meter,
        route: str,
        started: float,
        *,
        tokens: int,
        status: int = 200,
        error_code: str = "",
    ) -> None:
        outcome = Outcome(
            route=route,
            status=status,
            error_code=error_code,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )
        self._usage.record(identity, meter.model, tokens, 0, request_id_var.get(), outcome=outcome)
