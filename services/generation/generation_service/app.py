import grpc
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc

from .servicer import GenerationServicer
from .settings import GenerationSettings
from .upstream import UpstreamClient, UpstreamConfig


class GenerationApp:
    service_names = (generation_pb2.DESCRIPTOR.services_by_name["GenerationService"].full_name,)

    def __init__(self, settings: GenerationSettings) -> None:
        self._upstream = UpstreamClient(
            UpstreamConfig(
                base_url=settings.generation_upstream_base_url,
                api_key=settings.generation_upstream_api_key,
                connect_timeout=settings.generation_connect_timeout_seconds,
                read_timeout=settings.generation_read_timeout_seconds,
                max_connections=settings.generation_max_connections,
            )
        )
        self._servicer = GenerationServicer(self._upstream, settings.generation_models)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        generation_pb2_grpc.add_GenerationServiceServicer_to_server(self._servicer, server)

    async def start(self) -> None:
        # Created here, after telemetry is set up, so the httpx instrumentation covers it.
        await self._upstream.open()

    async def stop(self) -> None:
        await self._upstream.aclose()
