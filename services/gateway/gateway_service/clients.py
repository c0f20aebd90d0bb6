"""gRPC channels and stubs to the three backends, opened and closed with the app."""

import asyncio
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmsuite.generation.v1 import generation_pb2_grpc
from llmsuite.guardrails.v1 import guardrails_pb2_grpc
from llmsuite.retrieval.v1 import retrieval_pb2_grpc
from llmsuite_common.grpc_client import TracedStub, call_metadata, channel
from opentelemetry.trace import TracerProvider

from .downstream import TimedStub
from .settings import GatewaySettings

CLOSE_GRACE_SECONDS = 5.0


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


class BackendClients:
    """Channels are created in open(), on the serving event loop; grpc.aio binds them to it."""

    def __init__(
        self, targets: BackendTargets, *, max_message_bytes: int, tracer_provider: TracerProvider | None = None
    ) -> None:
        self.targets = targets
        self._max_message_bytes = max_message_bytes
        # Client spans of every backend call; None means the global provider.
        self.tracer_provider = tracer_provider
        self._channels: dict[str, grpc.aio.Channel] = {}

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> "BackendClients":
        return cls(BackendTargets.from_settings(settings), max_message_bytes=settings.grpc_max_message_bytes)

    async def open(self) -> None:
        for name in ("guardrails", "retrieval", "generation"):
            self._channels[name] = channel(getattr(self.targets, name), max_message_bytes=self._max_message_bytes)
        # Unary backend calls count as downstream waits for x-gateway-overhead-ms, and toward
        # their hop's Server-Timing entry.
        traced = self.tracer_provider
        self.guardrails = TimedStub(
            TracedStub(guardrails_pb2_grpc.GuardrailsServiceStub(self._channels["guardrails"]), traced),
            {"CheckInput": "guardrails", "CheckContext": "guardrails"},
        )
        self.retrieval = TimedStub(
            TracedStub(retrieval_pb2_grpc.RetrievalServiceStub(self._channels["retrieval"]), traced),
            {"Search": "retrieval"},
        )
        self.generation = TracedStub(generation_pb2_grpc.GenerationServiceStub(self._channels["generation"]), traced)

    async def close(self) -> None:
        channels, self._channels = self._channels, {}
        await asyncio.gather(*(c.close(CLOSE_GRACE_SECONDS) for c in channels.values()))

    async def health(self, timeout: float) -> dict[str, str]:
        """Standard gRPC health status of each backend: SERVING, NOT_SERVING, or the call's failure."""
        names = list(self._channels)
        results = await asyncio.gather(*(self._check(self._channels[n], timeout) for n in names))
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _check(ch: grpc.aio.Channel, timeout: float) -> str:
        stub = health_pb2_grpc.HealthStub(ch)
        try:
            reply = await stub.Check(
                health_pb2.HealthCheckRequest(), timeout=timeout, metadata=call_metadata()
            )
        except grpc.aio.AioRpcError as err:
            return err.code().name
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
