import logging
from contextlib import aclosing

import grpc
from llmsuite.common.v1 import common_pb2
from llmsuite.generation.v1 import generation_pb2, generation_pb2_grpc

from llmsuite_common.errors import NotFound

from .settings import ModelRoute
from .upstream import ContentDelta, UpstreamClient
from .upstream_request import build_body
from .usage import resolve_usage

log = logging.getLogger(__name__)

OWNED_BY = "llmsuite"


class GenerationServicer(generation_pb2_grpc.GenerationServiceServicer):
    def __init__(self, upstream: UpstreamClient, models: dict[str, ModelRoute]) -> None:
        self._upstream = upstream
        self._models = dict(models)

    async def Generate(self, request: generation_pb2.GenerateRequest, context: grpc.aio.ServicerContext):  # type: ignore[override]
        route = self._models.get(request.model)
        if route is None:
            raise NotFound(f"model '{request.model}' does not exist", code="model_not_found", param="model")
        body = build_body(request, route)
        deltas = 0
        # aclosing: however this generator ends (cancel, deadline, error), the
        # upstream response is closed now rather than when the garbage collector gets to it.
        stream = self._upstream.stream_chat(body, model=request.model, remaining=context.time_remaining())
        async with aclosing(stream) as events:
            async for event in events:
                if isinstance(event, ContentDelta):
                    deltas += 1
                    yield generation_pb2.GenerateResponse(
                        delta=generation_pb2.Delta(content=event.content, role=event.role)
                    )
                    continue
                usage = resolve_usage(event.usage, contents=(m.content for m in request.messages), deltas=deltas)
                log.info(
                    "generated",
                    extra={
                        "model": request.model,
                        "finish_reason": event.finish_reason,
                        "prompt_tokens": usage.prompt_tokens,
                        "completion_tokens": usage.completion_tokens,
                        "usage_source": "upstream" if event.usage else "estimate",
                    },
                )
                yield generation_pb2.GenerateResponse(
                    final=generation_pb2.Final(
                        finish_reason=event.finish_reason,
                        usage=common_pb2.Usage(
                            prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens,
                            total_tokens=usage.total_tokens,
                            cached_tokens=usage.cached_tokens,
                        ),
                        upstream_id=event.upstream_id,
                    )
                )

    async def ListModels(
        self, request: generation_pb2.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> generation_pb2.ListModelsResponse:
        return generation_pb2.ListModelsResponse(
            models=[generation_pb2.Model(id=name, owned_by=OWNED_BY) for name in self._models]
        )
