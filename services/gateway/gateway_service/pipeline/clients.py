"""gRPC channels and stubs to the three backends, opened and closed with the app."""

import asyncio
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite.generation.v1 import generation_pb2_grpc
from llmsuite.guardrails.v1 import guardrails_pb2_grpc
from llmsuite.retrieval.v1 import retrieval_pb2_grpc
from llmsuite_common.call_auth import CallCredentials, OutboundCredentials
from llmsuite_common.grpc_client import BALANCER_HEALTH_SERVICE, TracedStub, call_metadata, channel
from llmsuite_common.grpc_tls import settings_channel_credentials
from llmsuite_common.service_tokens import SigningKey, TokenIssuer
from opentelemetry.trace import TracerProvider

from ..settings import GatewaySettings
from .downstream import TimedStub

CLOSE_GRACE_SECONDS = 5.0
# Health asks per backend and readiness check (_check): a second ask reaches another replica.
HEALTH_ASKS = 2


@dataclass(frozen=True)
class BackendTargets:
    guardrails: str
    retrieval: str
    generation: str

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "BackendTargets":
        return cls(
            guardrails=settings.gateway_guardrails_target,
            retrieval=settings.gateway_retrieval_target,
            generation=settings.gateway_generation_target,
        )


def token_issuer(settings: GatewaySettings) -> TokenIssuer:
    if not settings.gateway_token_signing_key_file:
        raise RuntimeError(
            "GATEWAY_TOKEN_SIGNING_KEY_FILE is not set: the gateway signs a service token for every "
            "backend call. Make a key pair with `python -m llmsuite_common.service_keys --out <dir>`."
        )
    return TokenIssuer(
        SigningKey.from_file(settings.gateway_token_signing_key_file),
        ttl_seconds=settings.gateway_token_ttl_seconds,
        refresh_seconds=settings.gateway_token_ttl_seconds / 5,
    )


class BackendClients:
    """Channels are created in open(), on the serving event loop; grpc.aio binds them to it."""

    def __init__(
        self,
        targets: BackendTargets,
        *,
        max_message_bytes: int,
        tracer_provider: TracerProvider | None = None,
        credentials: CallCredentials | None = None,
        tls: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.targets = targets
        self._max_message_bytes = max_message_bytes
        # Each call carries a service token for the key the request came with (call_auth).
        self.credentials = credentials
        # Signs those tokens, and those `POST /v1/auth/token` hands out; None: neither is possible.
        self.issuer: TokenIssuer | None = getattr(credentials, "issuer", None)
        self._tls = tls
        # Client spans of every backend call; None means the global provider.
        self.tracer_provider = tracer_provider
        self._channels: dict[str, grpc.aio.Channel] = {}

    @classmethod
    def from_settings(cls, settings: GatewaySettings, issuer: TokenIssuer | None = None) -> "BackendClients":
        return cls(
            BackendTargets.from_settings(settings),
            max_message_bytes=settings.grpc_max_message_bytes,
            credentials=OutboundCredentials(issuer or token_issuer(settings)),
            tls=settings_channel_credentials(settings),
        )

    async def open(self) -> None:
        for name in ("guardrails", "retrieval", "generation"):
            self._channels[name] = channel(
                getattr(self.targets, name), max_message_bytes=self._max_message_bytes, credentials=self._tls
            )

        def traced(stub: object, audience: str) -> TracedStub:
            return TracedStub(stub, self.tracer_provider, audience=audience, credentials=self.credentials)

        # Unary backend calls count as downstream waits for x-gateway-overhead-ms, and toward
        # their hop's Server-Timing entry.
        # Typed as the stubs they stand for: TracedStub and TimedStub forward every call.
        self.guardrails: Any = TimedStub(
            traced(guardrails_pb2_grpc.GuardrailsServiceStub(self._channels["guardrails"]), "guardrails"),
            {"CheckInput": "guardrails", "CheckContext": "guardrails"},
        )
        self.retrieval: Any = TimedStub(
            traced(retrieval_pb2_grpc.RetrievalServiceStub(self._channels["retrieval"]), "retrieval"),
            {"Search": "retrieval"},
        )
        self.generation: Any = traced(
            generation_pb2_grpc.GenerationServiceStub(self._channels["generation"]), "generation"
        )

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(c.close(CLOSE_GRACE_SECONDS) for c in channels.values()))

    async def health(self, timeout: float) -> dict[str, str]:
        """Whether each backend takes this gateway's calls: SERVING, NOT_SERVING, or the call's failure.

        Asked through the channel for the name it balances on (BALANCER_HEALTH_SERVICE), so the
        answer comes from a replica calls would go to: one replica draining (NOT_SERVING for "",
        served until its drain ends) while another serves leaves the gateway ready.
        """
        names = list(self._channels)
        results = await asyncio.gather(*(self._check(self._channels[n], timeout) for n in names))
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _check(ch: grpc.aio.Channel, timeout: float) -> str:
        """Asked twice when the first answer is not SERVING: round robin sends the second ask to
        the next replica. A replica whose drain has just ended answers NOT_SERVING (or its
        listener refuses the call) in the moment before the channel's health watch drops it, and
        one such answer must not take the gateway out of its Service while another replica serves.
        """
        stub = health_pb2_grpc.HealthStub(ch)
        # Both asks within the one timeout the readiness probe allows.
        deadline = asyncio.get_running_loop().time() + timeout
        status = grpc.StatusCode.DEADLINE_EXCEEDED.name
        for _ in range(HEALTH_ASKS):
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                reply = await stub.Check(
                    health_pb2.HealthCheckRequest(service=BALANCER_HEALTH_SERVICE),
                    timeout=remaining,
                    metadata=call_metadata(),
                )
            except grpc.aio.AioRpcError as err:
                status = err.code().name
                continue
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            if status == "SERVING":
                break
        return status
